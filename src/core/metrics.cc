#include "core/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

namespace lakeloop::metrics {

namespace internal {
size_t ShardIndex() {
  static std::atomic<size_t> next{0};
  thread_local const size_t index = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return index;
}
}  // namespace internal

uint64_t Counter::Value() const {
  uint64_t total = 0;
  for (const auto& s : shards_) total += s.v.load(std::memory_order_relaxed);
  return total;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), shards_(new Shard[internal::kShards]) {
  for (size_t i = 0; i < internal::kShards; ++i) {
    shards_[i].counts.reset(new std::atomic<uint64_t>[bounds_.size() + 1]);
    for (size_t b = 0; b <= bounds_.size(); ++b) shards_[i].counts[b].store(0);
  }
}

void Histogram::Observe(double v) {
  // First bound >= v (bounds are inclusive upper limits); past the end = +Inf. NaN counts as
  // +Inf so that count stays the sum of the buckets.
  size_t i = std::isnan(v)
                 ? bounds_.size()
                 : static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                       bounds_.begin());
  Shard& s = shards_[internal::ShardIndex()];
  s.counts[i].fetch_add(1, std::memory_order_relaxed);
  s.sum.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot out;
  out.bounds = bounds_;
  out.cumulative.assign(bounds_.size() + 1, 0);
  for (size_t i = 0; i < internal::kShards; ++i) {
    for (size_t b = 0; b <= bounds_.size(); ++b) {
      out.cumulative[b] += shards_[i].counts[b].load(std::memory_order_relaxed);
    }
    out.sum += shards_[i].sum.load(std::memory_order_relaxed);
  }
  for (size_t b = 1; b < out.cumulative.size(); ++b) out.cumulative[b] += out.cumulative[b - 1];
  out.count = out.cumulative.back();
  return out;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  std::vector<double> out;
  for (int i = 0; i < count; ++i) out.push_back(start + width * i);
  return out;
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

namespace {

// HELP text escaping: backslash and newline (quotes stay).
std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

bool ValidName(std::string_view n, bool colons) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (colons && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// {a="x",b="y"} with `extra` (e.g. le) appended; "" when there are no labels.
std::string LabelText(const Labels& labels, const std::string& extra_name = "",
                      const std::string& extra_value = "") {
  if (labels.empty() && extra_name.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k + "=\"" + EscapeLabelValue(v) + "\"";
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name + "=\"" + extra_value + "\"";
  }
  return out + "}";
}

}  // namespace

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

Result<Registry::Family*> Registry::FamilyFor(std::string_view name, std::string_view help,
                                              Type type, Labels& labels,
                                              const std::vector<double>* bounds) {
  std::string n(name);
  if (!ValidName(name, /*colons=*/true)) {
    return InvalidArgument("metrics: '" + n + "' is not a valid metric name");
  }
  if (type == Type::kCounter && !name.ends_with("_total")) {
    return InvalidArgument("metrics: counter '" + n + "' must end in _total");
  }
  std::sort(labels.begin(), labels.end());
  std::set<std::string> seen;
  for (const auto& [k, v] : labels) {
    if (!ValidName(k, /*colons=*/false) || k.starts_with("__")) {
      return InvalidArgument("metrics: " + n + ": '" + k + "' is not a valid label name");
    }
    if (type == Type::kHistogram && k == "le") {
      return InvalidArgument("metrics: " + n + ": a histogram may not have a label 'le'");
    }
    if (!seen.insert(k).second) {
      return InvalidArgument("metrics: " + n + ": label '" + k + "' given twice");
    }
  }
  if (bounds) {
    if (bounds->empty()) return InvalidArgument("metrics: " + n + ": a histogram needs buckets");
    for (size_t i = 0; i < bounds->size(); ++i) {
      if (!std::isfinite((*bounds)[i]) || (i > 0 && (*bounds)[i] <= (*bounds)[i - 1])) {
        return InvalidArgument("metrics: " + n +
                               ": bucket bounds must be finite and strictly increasing");
      }
    }
  }
  auto it = families_.find(name);
  if (it == families_.end()) {
    Family f;
    f.type = type;
    f.help = std::string(help);
    if (bounds) f.bounds = *bounds;
    it = families_.emplace(n, std::move(f)).first;
  } else {
    Family& f = it->second;
    if (f.type != type || f.help != help || (bounds && f.bounds != *bounds)) {
      return InvalidArgument("metrics: '" + n +
                             "' is already registered with another type, help or buckets");
    }
  }
  return &it->second;
}

Result<Counter*> Registry::GetCounter(std::string_view name, std::string_view help, Labels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Family * f, FamilyFor(name, help, Type::kCounter, labels, nullptr));
  auto& slot = f->counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return slot.get();
}

Result<Gauge*> Registry::GetGauge(std::string_view name, std::string_view help, Labels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Family * f, FamilyFor(name, help, Type::kGauge, labels, nullptr));
  auto& slot = f->gauges[labels];
  if (!slot) slot = std::make_unique<Gauge>();
  return slot.get();
}

Result<Histogram*> Registry::GetHistogram(std::string_view name, std::string_view help,
                                          std::vector<double> bounds, Labels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Family * f, FamilyFor(name, help, Type::kHistogram, labels, &bounds));
  auto& slot = f->histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>(std::move(bounds));
  return slot.get();
}

Status Registry::AddCounterCallback(std::string_view name, std::string_view help, Labels labels,
                                    std::function<double()> value) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Family * f, FamilyFor(name, help, Type::kCounter, labels, nullptr));
  if (f->counters.count(labels) || f->callbacks.count(labels)) {
    return InvalidArgument("metrics: " + std::string(name) + ": that series exists");
  }
  f->callbacks[labels] = std::move(value);
  return Status::Ok();
}

Status Registry::AddGaugeCallback(std::string_view name, std::string_view help, Labels labels,
                                  std::function<double()> value) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Family * f, FamilyFor(name, help, Type::kGauge, labels, nullptr));
  if (f->gauges.count(labels) || f->callbacks.count(labels)) {
    return InvalidArgument("metrics: " + std::string(name) + ": that series exists");
  }
  f->callbacks[labels] = std::move(value);
  return Status::Ok();
}

std::string Registry::RenderPrometheus() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    static constexpr const char* kTypeNames[] = {"counter", "gauge", "histogram"};
    out += "# HELP " + name + " " + EscapeHelp(f.help) + "\n";
    out += "# TYPE " + name + " " + kTypeNames[static_cast<int>(f.type)] + "\n";
    switch (f.type) {
      case Type::kCounter:
      case Type::kGauge: {
        // Owned series and callback series, merged in label order.
        std::map<Labels, std::string> lines;
        for (const auto& [labels, c] : f.counters) lines[labels] = std::to_string(c->Value());
        for (const auto& [labels, g] : f.gauges) lines[labels] = FormatValue(g->Value());
        for (const auto& [labels, fn] : f.callbacks) lines[labels] = FormatValue(fn());
        for (const auto& [labels, v] : lines) out += name + LabelText(labels) + " " + v + "\n";
        break;
      }
      case Type::kHistogram:
        for (const auto& [labels, h] : f.histograms) {
          Histogram::Snapshot s = h->Read();
          for (size_t b = 0; b < s.bounds.size(); ++b) {
            out += name + "_bucket" + LabelText(labels, "le", FormatValue(s.bounds[b])) + " " +
                   std::to_string(s.cumulative[b]) + "\n";
          }
          out += name + "_bucket" + LabelText(labels, "le", "+Inf") + " " +
                 std::to_string(s.count) + "\n";
          out += name + "_sum" + LabelText(labels) + " " + FormatValue(s.sum) + "\n";
          out += name + "_count" + LabelText(labels) + " " + std::to_string(s.count) + "\n";
        }
        break;
    }
  }
  return out;
}

}  // namespace lakeloop::metrics
