// A server for wrk: POST /echo answers {"ok":true,"bytes":N} inline on the io threads (or, with
// --worker, on the worker pool). Not a test; see README.md for the figures.
//   api_bench_server [port=8099] [io_threads=1] [--worker]
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "api/api.h"
#include "core/json.h"

int main(int argc, char** argv) {
  using namespace lakeloop;
  using namespace lakeloop::api;
  int port = argc > 1 ? std::atoi(argv[1]) : 8099;
  int io_threads = argc > 2 ? std::atoi(argv[2]) : 1;
  bool worker = argc > 3 && std::strcmp(argv[3], "--worker") == 0;

  Router router;
  RouteSpec spec;
  spec.method = "POST";
  spec.pattern = "/echo";
  spec.min_role = Role::kNone;
  spec.execution = worker ? Execution::kWorker : Execution::kInline;
  Status s = router.AddSync(spec, [](const Request& req) {
    Response r;
    JsonWriter w(&r.body);
    w.BeginObject().Key("ok").Bool(true).Key("bytes").Uint(req.body.size()).EndObject();
    return r;
  });
  if (!s.ok()) return 1;
  HttpServerOptions o;
  o.listen = "127.0.0.1:" + std::to_string(port);
  o.io_threads = static_cast<size_t>(io_threads);
  o.worker_threads = 2;
  HttpServer server(o, std::move(router));
  s = server.Start();
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("listening on 127.0.0.1:%u io_threads=%d %s\n", server.port(), io_threads,
              worker ? "worker" : "inline");
  std::fflush(stdout);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  server.Stop(std::chrono::milliseconds(1000));
  return 0;
}
