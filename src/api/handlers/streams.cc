// Streams: event ingest (durable on acknowledgement), per-stream figures, online feature reads.
#include "api/handlers.h"
#include "core/json.h"

namespace lakeloop::api {
namespace {

Response IngestResponse(const realtime::IngestReport& r) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject()
      .Key("accepted")
      .Int(r.accepted)
      .Key("duplicates")
      .Int(r.duplicates)
      .Key("rejected")
      .BeginArray();
  for (const auto& e : r.rejected) {
    w.BeginObject().Key("index").Uint(e.index).Key("error").String(e.error).EndObject();
  }
  w.EndArray().EndObject();
  return Response::Json(std::move(out));
}

Response ErrorWithRetry(const Status& s) {
  Response r = Response::Error(s);
  if (s.code() == Code::kResourceExhausted) r.headers.push_back({"Retry-After", "1"});
  return r;
}

// Counts the events of an ingest body (a JSON array's top-level elements, or NDJSON's non-blank
// lines) without parsing them, stopping once past `cap`: a batch over the limit is refused before
// any event is validated.
int64_t CountEvents(std::string_view body, int64_t cap) {
  size_t i = 0;
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (i < body.size() && space(body[i])) ++i;
  int64_t n = 0;
  if (i < body.size() && body[i] == '[') {
    int depth = 0;
    bool in_string = false, escaped = false, element = false;
    for (; i < body.size() && n <= cap; ++i) {
      char c = body[i];
      if (in_string) {
        if (escaped) {
          escaped = false;
        } else if (c == '\\') {
          escaped = true;
        } else if (c == '"') {
          in_string = false;
        }
        continue;
      }
      if (depth == 1 && !element && !space(c) && c != ',' && c != ']') {
        element = true;
        ++n;
      }
      if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if (c == ']' || c == '}') {
        if (--depth == 0) break;
      } else if (c == ',' && depth == 1) {
        element = false;
      }
    }
    return n;
  }
  bool blank = true;
  for (; i < body.size() && n <= cap; ++i) {
    char c = body[i];
    if (c == '\n') {
      if (!blank) ++n;
      blank = true;
    } else if (!space(c)) {
      blank = false;
    }
  }
  if (!blank) ++n;
  return n;
}

Result<Response> ListStreams(Services* s, const Request&) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject().Key("streams").BeginArray();
  for (const auto& name : s->realtime->StreamNames()) {
    ASSIGN_OR_RETURN(std::string one, s->realtime->StreamJson(name));
    w.Raw(one);
  }
  w.EndArray().EndObject();
  return Response::Json(std::move(out));
}

Result<Response> GetStream(Services* s, const Request& req) {
  ASSIGN_OR_RETURN(std::string out, s->realtime->StreamJson(std::string(req.PathParam("stream"))));
  return Response::Json(std::move(out));
}

Result<Response> Archive(Services* s, const Request& req) {
  std::string name(req.PathParam("stream"));
  int rounds = 1000;
  if (auto r = req.QueryParam("max_rounds")) {
    try {
      size_t used = 0;
      rounds = std::stoi(std::string(*r), &used);
      if (used != r->size() || rounds < 1 || rounds > 1000) throw std::invalid_argument("");
    } catch (const std::exception&) {
      return InvalidArgument("max_rounds must be an integer from 1 to 1000");
    }
  }
  bool compact = false;
  if (auto c = req.QueryParam("compact")) {
    if (*c != "true" && *c != "false") return InvalidArgument("compact must be true or false");
    compact = *c == "true";
  }
  ASSIGN_OR_RETURN(stream::DrainResult d, s->realtime->ArchiveNow(name, rounds));
  stream::CompactResult c;
  if (compact) {
    ASSIGN_OR_RETURN(c, s->realtime->CompactNow(name));
  }
  ASSIGN_OR_RETURN(std::string out, s->realtime->StreamJson(name));
  // The stream's figures plus what this call did: done=false (202) when events remain after the
  // round limit; the background archiver continues with them.
  std::string now;
  JsonWriter w(&now);
  w.BeginObject()
      .Key("done")
      .Bool(d.done)
      .Key("rounds")
      .Int(d.rounds)
      .Key("events_archived")
      .Int(d.events)
      .Key("events_remaining")
      .Int(d.remaining);
  if (compact) {
    w.Key("compaction")
        .BeginObject()
        .Key("dates")
        .Int(c.dates)
        .Key("files_removed")
        .Int(c.files_removed)
        .Key("files_added")
        .Int(c.files_added)
        .Key("lake_version")
        .Int(c.lake_version)
        .EndObject();
  }
  w.EndObject();
  if (!out.empty() && out.back() == '}') {
    out.pop_back();
    out += (out.size() > 1 ? ",\"archive_now\":" : "\"archive_now\":") + now + "}";
  }
  return Response::Json(std::move(out), d.done ? 200 : 202);
}

Result<Response> Online(Services* s, const Request& req) {
  Micros at = NowMicros();
  if (auto a = req.QueryParam("at")) {
    ASSIGN_OR_RETURN(at, ParseRfc3339(*a));
  }
  ASSIGN_OR_RETURN(features::FeatureVector v,
                   s->realtime->Online(std::string(req.PathParam("view")),
                                       std::string(req.PathParam("key")), at));
  std::string out;
  JsonWriter w(&out);
  w.BeginObject()
      .Key("view")
      .String(v.view)
      .Key("key")
      .String(v.key)
      .Key("as_of")
      .String(FormatRfc3339(v.as_of_us))
      .Key("features")
      .BeginObject();
  for (const auto& f : v.values) {
    w.Key(f.name);
    if (f.value) {
      w.Double(*f.value);
    } else {
      w.Null();
    }
  }
  w.EndObject().Key("exact").BeginObject();
  for (const auto& f : v.values) w.Key(f.name).Bool(f.exact);
  w.EndObject().EndObject();
  return Response::Json(std::move(out));
}

constexpr std::string_view kStreamSchema =
    R"({"type":"object","properties":{"stream":{"type":"string"},"partitions":{"type":"integer"},)"
    R"("events":{"type":"object"},"consumers":{"type":"array","items":{"type":"object"}},)"
    R"("archive":{"type":"object"},"views":{"type":"array","items":{"type":"object"}}}})";

}  // namespace

Status AddStreamRoutes(Router& router, Services* s) {
  RouteSpec ingest;
  ingest.method = "POST";
  ingest.pattern = "/api/v1/streams/{stream}/events";
  ingest.min_role = Role::kWriter;
  ingest.execution = Execution::kWorker;
  ingest.summary =
      "Append events (a JSON array or NDJSON); acknowledged once durable. Invalid events are "
      "reported by index and do not affect the others; 413 past server.max_events_per_request; "
      "429 with Retry-After when the log is full";
  ingest.tag = "streams";
  ingest.request_schema = R"({"type":"array","items":{"type":"object"}})";
  ingest.request_content_types = {"application/json", "application/x-ndjson"};
  ingest.response_schema =
      R"({"type":"object","required":["accepted","duplicates","rejected"],"properties":{)"
      R"("accepted":{"type":"integer"},"duplicates":{"type":"integer"},"rejected":{"type":"array",)"
      R"("items":{"type":"object","properties":{"index":{"type":"integer"},"error":{"type":"string"}}}}}})";
  RETURN_IF_ERROR(router.Add(ingest, [s](const Request& req, Responder respond) {
    int64_t cap = s->config ? s->config->server.max_events_per_request : 100000;
    if (CountEvents(req.body, cap) > cap) {
      return respond.SendError(Status(Code::kPayloadTooLarge,
                                      "more than " + std::to_string(cap) +
                                          " events in one request (server.max_events_per_request); "
                                          "split the batch"));
    }
    s->realtime->Ingest(std::string(req.PathParam("stream")), req.body,
                        [respond](Result<realtime::IngestReport> r) {
                          respond.Send(r.ok() ? IngestResponse(*r) : ErrorWithRetry(r.status()));
                        });
  }));

  RouteSpec list;
  list.method = "GET";
  list.pattern = "/api/v1/streams";
  list.summary = "Streams with their figures";
  list.tag = "streams";
  list.response_schema = R"({"type":"object","properties":{"streams":{"type":"array","items":)" +
                         std::string(kStreamSchema) + "}}}";
  RETURN_IF_ERROR(router.AddSync(list, Wrap(s, ListStreams)));

  RouteSpec one;
  one.method = "GET";
  one.pattern = "/api/v1/streams/{stream}";
  one.summary =
      "A stream's figures: events in, duplicates, rejected, late; consumer lag; archive; feature "
      "freshness";
  one.tag = "streams";
  one.response_schema = std::string(kStreamSchema);
  RETURN_IF_ERROR(router.AddSync(one, Wrap(s, GetStream)));

  RouteSpec archive;
  archive.method = "POST";
  archive.pattern = "/api/v1/streams/{stream}/archive";
  archive.min_role = Role::kWriter;
  archive.summary = "Archive the stream's events to raw.<stream> now (it also runs every second)";
  archive.tag = "streams";
  archive.query_params = {
      {"max_rounds", "archive batches to run before answering (1-1000, default 1000)", "integer",
       false},
      {"compact", "true: also compact the archive's small files now", "boolean", false}};
  archive.response_schema = std::string(kStreamSchema);
  RETURN_IF_ERROR(router.AddSync(archive, Wrap(s, Archive)));

  RouteSpec online;
  online.method = "GET";
  online.pattern = "/api/v1/features/online/{view}/{key}";
  online.summary = "One entity's current feature values in a stream feature view";
  online.tag = "features";
  online.query_params = {{"at", "read time (RFC 3339); default now", "string", false}};
  online.response_schema =
      R"({"type":"object","properties":{"view":{"type":"string"},"key":{"type":"string"},)"
      R"("as_of":{"type":"string"},"features":{"type":"object"},"exact":{"type":"object"}}})";
  return router.AddSync(online, Wrap(s, Online));
}

}  // namespace lakeloop::api
