#include "stream/stream.h"

#include <gtest/gtest.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "stream/rocks.h"

namespace lakeloop::stream {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr int64_t kSec = 1'000'000;

// A test-controlled clock.
struct FakeClock {
  std::atomic<int64_t> now{1'700'000'000 * kSec};
  std::function<int64_t()> Fn() {
    return [this] { return now.load(); };
  }
};

// Waits for a condition with a bounded timeout (no sleeps).
struct Latch {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void Open() {
    std::lock_guard<std::mutex> l(mu);
    open = true;
    cv.notify_all();
  }
  bool Wait(std::chrono::seconds timeout = seconds(30)) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, timeout, [&] { return open; });
  }
};

Event Ev(std::string key, int64_t t, std::string id = "", std::string payload = "{}") {
  return Event{std::move(key), t, std::move(id), std::move(payload)};
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("stream_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    options_.now_us = clock_.Fn();
    Open();
  }
  void TearDown() override {
    log_.reset();
    fs::remove_all(dir_);
  }
  void Open() {
    log_.reset();
    auto r = OpenRocksEventLog(dir_.string(), options_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    log_ = std::move(r).value();
  }
  void Register(StreamOptions o) { ASSERT_TRUE(log_->RegisterStream(o).ok()); }
  std::vector<Record> ReadAll(const std::string& stream, int32_t p) {
    auto r = log_->Read(stream, p, 0, 1'000'000);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<Record>{};
  }

  fs::path dir_;
  FakeClock clock_;
  RocksLogOptions options_;
  std::unique_ptr<EventLog> log_;
};

TEST(PartitionerTest, MatchesKafkaMurmur2) {
  // Values from Kafka's Java Utils.murmur2.
  EXPECT_EQ(KafkaMurmur2("1"), -1993445489);
  EXPECT_EQ(KafkaMurmur2("12"), 126087238);
  EXPECT_EQ(KafkaMurmur2("123"), -267702483);
  EXPECT_EQ(KafkaMurmur2("1234"), -1614185708);
  EXPECT_EQ(KafkaMurmur2("12345"), -1188365604);
  EXPECT_EQ(KafkaMurmur2("0"), 971027396);
  for (int n : {1, 3, 4, 16}) {
    for (int i = 0; i < 100; ++i) {
      std::string k = "user-" + std::to_string(i);
      int32_t p = PartitionForKey(k, n);
      EXPECT_GE(p, 0);
      EXPECT_LT(p, n);
      EXPECT_EQ(p, static_cast<int32_t>((static_cast<uint32_t>(KafkaMurmur2(k)) & 0x7fffffff) % n));
    }
  }
}

TEST_F(StreamTest, RegisterValidatesAndPersists) {
  EXPECT_EQ(log_->RegisterStream({.name = "bad name"}).code(), Code::kInvalidArgument);
  EXPECT_EQ(log_->RegisterStream({.name = "s", .partitions = 0}).code(), Code::kInvalidArgument);
  EXPECT_EQ(log_->RegisterStream({.name = "s", .dedup_window_us = -1}).code(),
            Code::kInvalidArgument);
  Register({.name = "clicks", .partitions = 3, .dedup_window_us = 5});
  EXPECT_EQ(log_->RegisterStream({.name = "clicks", .partitions = 4}).code(), Code::kConflict);
  Register({.name = "clicks", .partitions = 3, .dedup_window_us = 7});  // settings may change
  EXPECT_EQ(log_->GetStream("nope").status().code(), Code::kNotFound);
  Open();
  auto s = log_->GetStream("clicks");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->partitions, 3);
  EXPECT_EQ(s->dedup_window_us, 7);
  EXPECT_EQ(log_->ListStreams().size(), 1u);
}

TEST_F(StreamTest, AppendReadsBackInOrderPerPartition) {
  Register({.name = "clicks", .partitions = 4});
  std::vector<Event> events;
  for (int i = 0; i < 200; ++i) {
    events.push_back(
        Ev("user-" + std::to_string(i % 13), 1000 + i, "", "{\"i\":" + std::to_string(i) + "}"));
  }
  auto r = log_->Append("clicks", events);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->events.size(), events.size());
  std::map<int32_t, int64_t> next;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& a = r->events[i];
    EXPECT_FALSE(a.duplicate);
    EXPECT_EQ(a.partition, PartitionForKey(events[i].key, 4));
    EXPECT_EQ(a.offset, next[a.partition]++) << "offsets are dense, in request order";
  }
  size_t total = 0;
  for (int32_t p = 0; p < 4; ++p) {
    auto recs = ReadAll("clicks", p);
    total += recs.size();
    for (size_t j = 0; j < recs.size(); ++j) {
      EXPECT_EQ(recs[j].offset, static_cast<int64_t>(j));
      EXPECT_EQ(recs[j].partition, p);
      EXPECT_EQ(recs[j].ingest_time_us, clock_.now.load());
    }
    for (size_t i = 0; i < events.size(); ++i) {
      if (r->events[i].partition != p) continue;
      const Record& rec = recs[r->events[i].offset];
      EXPECT_EQ(rec.event.key, events[i].key);
      EXPECT_EQ(rec.event.payload, events[i].payload);
      EXPECT_EQ(rec.event.event_time_us, events[i].event_time_us);
    }
    // Paging.
    auto page = log_->Read("clicks", p, 2, 3);
    ASSERT_TRUE(page.ok());
    EXPECT_LE(page->size(), 3u);
    if (!page->empty()) {
      EXPECT_EQ(page->front().offset, 2);
    }
  }
  EXPECT_EQ(total, events.size());
  auto ends = log_->EndOffsets("clicks");
  ASSERT_TRUE(ends.ok());
  for (int32_t p = 0; p < 4; ++p) EXPECT_EQ((*ends)[p], next[p]);
}

TEST_F(StreamTest, RejectsBadRequestsWithCodes) {
  Register({.name = "s", .partitions = 2});
  EXPECT_EQ(log_->Append("missing", {Ev("k", 1)}).status().code(), Code::kNotFound);
  EXPECT_EQ(log_->Append("s", {Ev("", 1)}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(log_->Append("s", {Ev("k", 1, std::string(600, 'x'))}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(log_->Append("s", {Ev("k", 1, "", std::string(2 << 20, 'x'))}).status().code(),
            Code::kPayloadTooLarge);
  EXPECT_EQ(log_->Read("s", 2, 0, 10).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(log_->Read("missing", 0, 0, 10).status().code(), Code::kNotFound);
  auto empty = log_->Append("s", {});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->events.empty());
  // A rejected batch writes nothing, not even its valid events.
  EXPECT_EQ(log_->Append("s", {Ev("a", 1), Ev("", 2)}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ((*log_->EndOffsets("s"))[0] + (*log_->EndOffsets("s"))[1], 0);
}

TEST_F(StreamTest, OffsetsContinueAfterReopen) {
  Register({.name = "s", .partitions = 2});
  std::vector<Event> batch;
  for (int i = 0; i < 50; ++i) batch.push_back(Ev("k" + std::to_string(i), i));
  ASSERT_TRUE(log_->Append("s", batch).ok());
  auto before = *log_->EndOffsets("s");
  Open();
  EXPECT_EQ(*log_->EndOffsets("s"), before);
  auto r = log_->Append("s", batch);
  ASSERT_TRUE(r.ok());
  std::map<int32_t, int64_t> next{{0, before[0]}, {1, before[1]}};
  for (const auto& a : r->events) EXPECT_EQ(a.offset, next[a.partition]++);
  for (int32_t p = 0; p < 2; ++p) {
    auto recs = ReadAll("s", p);
    ASSERT_EQ(static_cast<int64_t>(recs.size()), 2 * before[p]);
    for (size_t j = 0; j < recs.size(); ++j) EXPECT_EQ(recs[j].offset, static_cast<int64_t>(j));
  }
}

TEST_F(StreamTest, ConcurrentAppendersAckedExactlyOnceInOrder) {
  Register({.name = "s", .partitions = 4});
  constexpr int kThreads = 8, kBatches = 150;
  struct Ack {
    int thread, seq;
    AppendedEvent a;
  };
  std::vector<std::vector<Ack>> acks(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      int seq = 0;
      for (int b = 0; b < kBatches; ++b) {
        std::vector<Event> batch;
        for (int i = 0; i < 1 + (b % 5); ++i, ++seq) {
          batch.push_back(Ev("key-" + std::to_string((t * 7 + seq) % 11), seq, "",
                             std::to_string(t) + ":" + std::to_string(seq)));
        }
        bool async = b % 2 == 1;
        Result<AppendResult> r = Status(Code::kInternal, "unset");
        if (async) {
          Latch done;
          log_->AppendAsync("s", batch, [&](Result<AppendResult> res) {
            r = std::move(res);
            done.Open();
          });
          ASSERT_TRUE(done.Wait());
        } else {
          r = log_->Append("s", batch);
        }
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        ASSERT_EQ(r->events.size(), batch.size());
        for (size_t i = 0; i < batch.size(); ++i) {
          acks[t].push_back(
              {t, seq - static_cast<int>(batch.size()) + static_cast<int>(i), r->events[i]});
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::map<std::pair<int32_t, int64_t>, std::string> by_pos;
  for (const auto& v : acks) {
    for (const auto& ack : v) {
      std::string id = std::to_string(ack.thread) + ":" + std::to_string(ack.seq);
      auto [it, fresh] = by_pos.emplace(std::make_pair(ack.a.partition, ack.a.offset), id);
      EXPECT_TRUE(fresh) << "two acks for one offset";
    }
  }
  size_t total = 0;
  for (int32_t p = 0; p < 4; ++p) {
    auto recs = ReadAll("s", p);
    total += recs.size();
    std::map<int, int> last_seq_of_thread;  // program order per thread within a partition
    for (size_t j = 0; j < recs.size(); ++j) {
      ASSERT_EQ(recs[j].offset, static_cast<int64_t>(j));
      EXPECT_EQ((by_pos[{p, recs[j].offset}]), recs[j].event.payload);
      auto colon = recs[j].event.payload.find(':');
      int th = std::stoi(recs[j].event.payload.substr(0, colon));
      int seq = std::stoi(recs[j].event.payload.substr(colon + 1));
      auto it = last_seq_of_thread.find(th);
      if (it != last_seq_of_thread.end()) {
        EXPECT_LT(it->second, seq);
      }
      last_seq_of_thread[th] = seq;
      if (j > 0) {
        EXPECT_LE(recs[j - 1].ingest_time_us, recs[j].ingest_time_us);
      }
    }
  }
  EXPECT_EQ(total, by_pos.size());
}

TEST_F(StreamTest, DedupWithinAndAcrossBatches) {
  Register({.name = "s", .partitions = 4, .dedup_window_us = 60 * kSec});
  auto r = log_->Append("s", {Ev("a", 1, "id-1"), Ev("b", 2, "id-2"), Ev("c", 3, "id-1"),
                              Ev("d", 4, ""), Ev("e", 5, "")});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->events[0].duplicate);
  EXPECT_FALSE(r->events[1].duplicate);
  EXPECT_TRUE(r->events[2].duplicate);
  // A duplicate names the record stored first, even though its key hashes elsewhere.
  EXPECT_EQ(r->events[2].partition, r->events[0].partition);
  EXPECT_EQ(r->events[2].offset, r->events[0].offset);
  EXPECT_FALSE(r->events[3].duplicate);  // no id: never de-duplicated
  EXPECT_FALSE(r->events[4].duplicate);
  auto r2 = log_->Append("s", {Ev("x", 9, "id-2"), Ev("y", 9, "id-3")});
  ASSERT_TRUE(r2.ok());
  EXPECT_TRUE(r2->events[0].duplicate);
  EXPECT_EQ(r2->events[0].offset, r->events[1].offset);
  EXPECT_FALSE(r2->events[1].duplicate);
  int64_t total = 0;
  const auto ends = *log_->EndOffsets("s");
  for (int64_t e : ends) total += e;
  EXPECT_EQ(total, 5);  // id-1, id-2, two without id, id-3
  // Dedup state survives a restart.
  Open();
  auto r3 = log_->Append("s", {Ev("z", 1, "id-3")});
  ASSERT_TRUE(r3.ok());
  EXPECT_TRUE(r3->events[0].duplicate);
}

TEST_F(StreamTest, DedupAcrossConcurrentAppends) {
  Register({.name = "s", .partitions = 3, .dedup_window_us = 60 * kSec});
  constexpr int kThreads = 6, kIds = 300;
  std::atomic<int> stored{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIds; i += 10) {
        std::vector<Event> batch;
        for (int j = 0; j < 10; ++j) {
          int id = (i + j + t * 37) % kIds;  // every thread sends every id, in another order
          batch.push_back(Ev("k" + std::to_string(t), 1, "id-" + std::to_string(id)));
        }
        auto r = log_->Append("s", batch);
        ASSERT_TRUE(r.ok());
        for (const auto& a : r->events) stored += !a.duplicate;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(stored.load(), kIds);
  std::set<std::string> ids;
  size_t total = 0;
  for (int32_t p = 0; p < 3; ++p) {
    for (const auto& rec : ReadAll("s", p)) {
      ids.insert(rec.event.event_id);
      ++total;
    }
  }
  EXPECT_EQ(total, static_cast<size_t>(kIds));
  EXPECT_EQ(ids.size(), static_cast<size_t>(kIds));
}

TEST_F(StreamTest, DedupWindowExpires) {
  Register({.name = "s", .partitions = 1, .dedup_window_us = 10 * kSec});
  Register({.name = "nodedup", .partitions = 1});
  const int64_t t0 = clock_.now;
  auto a = log_->Append("s", {Ev("k", 1, "x")});
  ASSERT_TRUE(a.ok());
  clock_.now = t0 + 9 * kSec;
  auto b = log_->Append("s", {Ev("k", 1, "x")});
  ASSERT_TRUE(b->events[0].duplicate);
  clock_.now = t0 + 10 * kSec;  // the window is (now - 10s, now]: the first copy is outside
  auto c = log_->Append("s", {Ev("k", 1, "x")});
  ASSERT_FALSE(c->events[0].duplicate);
  EXPECT_EQ(c->events[0].offset, 1);
  clock_.now = t0 + 15 * kSec;
  auto d = log_->Append("s", {Ev("k", 1, "x")});
  EXPECT_TRUE(d->events[0].duplicate);
  EXPECT_EQ(d->events[0].offset, 1);
  // Trim expires the old entry (the one replaced at t0+10s) but not the live one.
  auto trimmed = log_->Trim(clock_.now);
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(trimmed->dedup_entries_expired, 1);
  auto trimmed2 = log_->Trim(t0 + 25 * kSec);
  EXPECT_EQ(trimmed2->dedup_entries_expired, 1);
  clock_.now = t0 + 25 * kSec;
  auto e = log_->Append("s", {Ev("k", 1, "x")});
  EXPECT_FALSE(e->events[0].duplicate);
  // Without a window, ids are not checked.
  auto f = log_->Append("nodedup", {Ev("k", 1, "x"), Ev("k", 1, "x")});
  EXPECT_FALSE(f->events[0].duplicate);
  EXPECT_FALSE(f->events[1].duplicate);
}

TEST_F(StreamTest, FullQueueFailsFastWithResourceExhausted) {
  options_.max_queue_events = 10;
  Open();
  Register({.name = "s", .partitions = 1});
  // Hold the committer inside a completion callback so the next request stays queued.
  Latch in_callback, release;
  log_->AppendAsync("s", {Ev("k", 1)}, [&](Result<AppendResult> r) {
    EXPECT_TRUE(r.ok());
    in_callback.Open();
    release.Wait();
  });
  ASSERT_TRUE(in_callback.Wait());
  Latch queued_done;
  Result<AppendResult> queued = Status(Code::kInternal, "unset");
  log_->AppendAsync("s", std::vector<Event>(10, Ev("k", 2)), [&](Result<AppendResult> r) {
    queued = std::move(r);
    queued_done.Open();
  });
  auto full = log_->Append("s", {Ev("k", 3)});
  EXPECT_EQ(full.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(log_->Append("s", std::vector<Event>(11, Ev("k", 3))).status().code(),
            Code::kPayloadTooLarge);
  release.Open();
  ASSERT_TRUE(queued_done.Wait());
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->events.back().offset, 10);
  EXPECT_TRUE(log_->Append("s", {Ev("k", 3)}).ok());  // room again
}

TEST_F(StreamTest, ClosingCommitsWhatIsQueued) {
  Register({.name = "s", .partitions = 1});
  std::atomic<int> ok{0};
  for (int i = 0; i < 50; ++i) {
    log_->AppendAsync("s", {Ev("k", i)}, [&](Result<AppendResult> r) { ok += r.ok(); });
  }
  log_.reset();  // joins the committer after it drained the queue
  EXPECT_EQ(ok.load(), 50);
  Open();
  EXPECT_EQ((*log_->EndOffsets("s"))[0], 50);
}

TEST_F(StreamTest, ConsumersCommitAndList) {
  Register({.name = "s", .partitions = 2});
  EXPECT_EQ(log_->CommittedOffset("c1", "s", 0).status().code(), Code::kNotFound);
  ASSERT_TRUE(log_->CommitOffset("c1", "s", 0, 5).ok());
  ASSERT_TRUE(log_->CommitOffset("c1", "s", 0, 7).ok());
  ASSERT_TRUE(log_->RegisterConsumer("archiver", "s", true).ok());
  ASSERT_TRUE(log_->CommitOffset("archiver", "s", 1, 3).ok());
  EXPECT_EQ(log_->CommitOffset("c1", "s", 9, 1).code(), Code::kInvalidArgument);
  EXPECT_EQ(log_->CommitOffset("c1", "nope", 0, 1).code(), Code::kNotFound);
  EXPECT_EQ(log_->CommitOffset("c1", "s", 0, -1).code(), Code::kInvalidArgument);
  EXPECT_EQ(*log_->CommittedOffset("c1", "s", 0), 7);
  Open();
  auto list = log_->ListConsumers("s");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].consumer, "archiver");
  EXPECT_TRUE((*list)[0].durable);
  EXPECT_EQ((*list)[0].next_offsets, (std::vector<int64_t>{-1, 3}));
  EXPECT_EQ((*list)[1].consumer, "c1");
  EXPECT_FALSE((*list)[1].durable);
  EXPECT_EQ((*list)[1].next_offsets, (std::vector<int64_t>{7, -1}));
}

TEST_F(StreamTest, RetentionNeverTrimsPastDurableConsumer) {
  Register({.name = "s", .partitions = 1, .retention_us = 60 * kSec});
  const int64_t t0 = clock_.now;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(log_->Append("s", {Ev("k", i)}).ok());
  clock_.now = t0 + 100 * kSec;
  for (int i = 10; i < 20; ++i) ASSERT_TRUE(log_->Append("s", {Ev("k", i)}).ok());
  ASSERT_TRUE(log_->RegisterConsumer("archiver", "s", true).ok());
  ASSERT_TRUE(log_->CommitOffset("fast", "s", 0, 20).ok());  // not durable: does not hold
  // Registered but nothing committed: holds everything.
  auto r0 = log_->Trim(t0 + 100 * kSec);
  ASSERT_TRUE(r0.ok());
  EXPECT_EQ(r0->records_deleted, 0);
  ASSERT_TRUE(log_->CommitOffset("archiver", "s", 0, 4).ok());
  auto r1 = log_->Trim(t0 + 100 * kSec);
  EXPECT_EQ(r1->records_deleted, 4);
  EXPECT_EQ((*log_->Offsets("s"))[0].begin, 4);
  ASSERT_TRUE(log_->CommitOffset("archiver", "s", 0, 15).ok());
  auto r2 = log_->Trim(t0 + 100 * kSec);  // time retention: only the first 10 are old
  EXPECT_EQ(r2->records_deleted, 6);
  EXPECT_GT(r2->bytes_deleted, 0);
  auto recs = ReadAll("s", 0);
  ASSERT_EQ(recs.size(), 10u);
  EXPECT_EQ(recs.front().offset, 10);
  // Reading below the first retained offset starts there.
  EXPECT_EQ(log_->Read("s", 0, 3, 1)->front().offset, 10);
  Open();
  EXPECT_EQ((*log_->Offsets("s"))[0].begin, 10);
  EXPECT_EQ((*log_->Offsets("s"))[0].end, 20);
  auto r3 = log_->Trim(t0 + 1000 * kSec);  // everything is old; the archiver is at 15
  EXPECT_EQ(r3->records_deleted, 5);
  EXPECT_EQ(ReadAll("s", 0).front().offset, 15);
  // Offsets continue after the partition was trimmed, also across a reopen.
  ASSERT_TRUE(log_->CommitOffset("archiver", "s", 0, 20).ok());
  ASSERT_TRUE(log_->Trim(t0 + 1000 * kSec).ok());
  EXPECT_TRUE(ReadAll("s", 0).empty());
  Open();
  auto a = log_->Append("s", {Ev("k", 1)});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->events[0].offset, 20);
}

TEST_F(StreamTest, RetentionBySize) {
  Register({.name = "s", .partitions = 1, .retention_bytes = 2000});
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(log_->Append("s", {Ev("k", i, "", std::string(90, 'x'))}).ok());
  }
  auto r = log_->Trim(clock_.now);
  ASSERT_TRUE(r.ok());
  // Each record is 124 bytes (14 key + 110 value): 16 fit in 2000.
  EXPECT_EQ(r->records_deleted, 84);
  EXPECT_EQ(r->bytes_deleted, 84 * 124);
  auto recs = ReadAll("s", 0);
  EXPECT_EQ(recs.size(), 16u);
  EXPECT_EQ(recs.back().offset, 99);
}

TEST_F(StreamTest, SeekTimeReplaysFromATime) {
  Register({.name = "s", .partitions = 1});
  const int64_t t0 = clock_.now;
  for (int i = 0; i < 100; ++i) {
    clock_.now = t0 + (i / 2) * kSec;  // two records per second
    ASSERT_TRUE(log_->Append("s", {Ev("k", i)}).ok());
  }
  EXPECT_EQ(*log_->SeekTime("s", 0, t0 - kSec), 0);
  EXPECT_EQ(*log_->SeekTime("s", 0, t0), 0);
  EXPECT_EQ(*log_->SeekTime("s", 0, t0 + 1), 2);
  EXPECT_EQ(*log_->SeekTime("s", 0, t0 + 10 * kSec), 20);
  EXPECT_EQ(*log_->SeekTime("s", 0, t0 + 49 * kSec), 98);
  EXPECT_EQ(*log_->SeekTime("s", 0, t0 + 50 * kSec), 100);  // after the end: the end
  auto from = *log_->SeekTime("s", 0, t0 + 30 * kSec);
  auto recs = log_->Read("s", 0, from, 1000);
  ASSERT_EQ(recs->size(), 40u);
  for (const auto& r : *recs) EXPECT_GE(r.ingest_time_us, t0 + 30 * kSec);
  // A clock going backwards does not break the order of ingest times.
  clock_.now = t0;
  ASSERT_TRUE(log_->Append("s", {Ev("k", 0)}).ok());
  EXPECT_EQ(ReadAll("s", 0).back().ingest_time_us, t0 + 49 * kSec);
}

TEST_F(StreamTest, RocksHandleCommitsStateAndOffsetAtomically) {
  Register({.name = "s", .partitions = 2});
  auto h = GetRocksHandle(*log_);
  ASSERT_TRUE(h.ok());
  rocksdb::WriteBatch wb;
  ASSERT_TRUE(wb.Put(h->state, "tile/user-1", "bytes").ok());
  ASSERT_TRUE(PutConsumerOffset(*h, &wb, "features", "s", 1, 42).ok());
  EXPECT_EQ(PutConsumerOffset(*h, &wb, "bad name", "s", 1, 42).code(), Code::kInvalidArgument);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  ASSERT_TRUE(h->db->Write(wo, &wb).ok());
  EXPECT_EQ(*log_->CommittedOffset("features", "s", 1), 42);
  std::string v;
  ASSERT_TRUE(h->db->Get(rocksdb::ReadOptions(), h->state, "tile/user-1", &v).ok());
  EXPECT_EQ(v, "bytes");
}

}  // namespace
}  // namespace lakeloop::stream
