// The built web UI (web/dist) at `/`: GET only, open (Role::kNone) like health; the API it calls
// stays protected. Request paths are never joined to the filesystem unchecked: see
// ResolveStaticPath.
#include <unistd.h>

#include <array>
#include <system_error>

#include "api/handlers.h"

namespace lakeloop::api {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kNotBuilt =
    "the web UI is not built: run scripts/setup.sh (it builds web/ into web/dist), or set "
    "server.web_root to a built UI";

// Vite names bundled assets "<name>-<hash>.<ext>" (hash: 8+ chars of [A-Za-z0-9_-]).
bool LooksHashed(std::string_view name) {
  size_t dot = name.rfind('.');
  size_t dash = name.rfind('-', dot);
  if (dot == std::string_view::npos || dash == std::string_view::npos || dash == 0) return false;
  return dot - dash - 1 >= 8;
}

Response FileResponse(const fs::path& file, std::string cache_control) {
  Response r;
  r.status = 200;
  r.content_type = std::string(StaticContentType(file.filename().string()));
  r.body_file = file;
  r.headers.push_back({"Cache-Control", std::move(cache_control)});
  r.headers.push_back({"X-Content-Type-Options", "nosniff"});
  return r;
}

}  // namespace

fs::path DefaultWebRoot() {
  std::array<char, 4096> buf{};
  ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return {};
  // <repo>/build/lakeloop -> <repo>/web/dist
  return fs::path(std::string(buf.data(), static_cast<size_t>(n))).parent_path().parent_path() /
         "web" / "dist";
}

std::string_view StaticContentType(std::string_view name) {
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".webp", "image/webp"},
      {".ico", "image/x-icon"},
      {".woff", "font/woff"},
      {".woff2", "font/woff2"},
      {".ttf", "font/ttf"},
      {".txt", "text/plain; charset=utf-8"},
      {".wasm", "application/wasm"},
  };
  size_t dot = name.rfind('.');
  if (dot != std::string_view::npos) {
    std::string ext(name.substr(dot));
    for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const auto& [e, type] : kTypes) {
      if (e == ext) return type;
    }
  }
  return "application/octet-stream";
}

Result<fs::path> ResolveStaticPath(const fs::path& root, std::string_view relative) {
  if (relative.empty()) return InvalidArgument("empty static path");
  if (relative.front() == '/') return InvalidArgument("absolute static path");
  // Each '/'-separated part: non-empty, not "." or "..", no hidden names, no backslash, NUL or
  // control characters (the path is already percent-decoded, so "%2e%2e" and "%00" land here).
  size_t start = 0;
  while (start <= relative.size()) {
    size_t end = relative.find('/', start);
    if (end == std::string_view::npos) end = relative.size();
    std::string_view part = relative.substr(start, end - start);
    if (part.empty()) return InvalidArgument("empty segment in static path");
    if (part.front() == '.') return InvalidArgument("static path segment starts with '.'");
    for (char c : part) {
      auto u = static_cast<unsigned char>(c);
      if (c == '\\' || c == ':' || u < 0x20 || u == 0x7f) {
        return InvalidArgument("static path has a backslash, colon or control character");
      }
    }
    start = end + 1;
  }
  std::error_code ec;
  fs::path canonical_root = fs::canonical(root, ec);
  if (ec) return NotFound(std::string(kNotBuilt));
  fs::path candidate = fs::canonical(canonical_root / fs::path(std::string(relative)), ec);
  if (ec) return NotFound("no such file: /" + std::string(relative));
  // Symlinks may not lead out of the root.
  auto [root_end, cand_it] = std::mismatch(canonical_root.begin(), canonical_root.end(),
                                           candidate.begin(), candidate.end());
  if (root_end != canonical_root.end()) return NotFound("no such file: /" + std::string(relative));
  if (!fs::is_regular_file(candidate, ec) || ec) {
    return NotFound("no such file: /" + std::string(relative));
  }
  return candidate;
}

Status AddStaticRoutes(Router& router, Services* s) {
  fs::path root = (s->config && !s->config->server.web_root.empty())
                      ? fs::path(s->config->server.web_root)
                      : DefaultWebRoot();
  auto index = [root](const Request&) -> Response {
    auto file = ResolveStaticPath(root, "index.html");
    if (!file.ok()) return Response::Error(NotFound(std::string(kNotBuilt)));
    return FileResponse(*file, "no-cache");
  };
  auto spec = [](std::string pattern, std::string summary) {
    RouteSpec r;
    r.method = "GET";
    r.pattern = std::move(pattern);
    r.min_role = Role::kNone;
    r.execution = Execution::kWorker;  // reads files
    r.summary = std::move(summary);
    r.tag = "ui";
    r.response_content_type = "text/html";
    return r;
  };
  RETURN_IF_ERROR(router.AddSync(spec("/", "The web UI (index.html)"), index));
  // Top-level files of web/dist (favicon...); any other one-segment path is a page of the
  // single-page app and gets index.html. "/api" alone stays an API 404.
  RETURN_IF_ERROR(router.AddSync(
      spec("/{file}", "A top-level file of the web UI, or its index.html for a page"),
      [root, index](const Request& req) -> Response {
        std::string_view name = req.PathParam("file");
        if (name == "api") return Response::Error(NotFound("no such route: /api"));
        auto file = ResolveStaticPath(root, name);
        if (file.ok()) {
          return FileResponse(*file, name == "index.html" ? "no-cache" : "public, max-age=3600");
        }
        if (file.status().code() == Code::kInvalidArgument) return Response::Error(file.status());
        return index(req);
      }));
  RETURN_IF_ERROR(router.AddSync(
      spec("/assets/{file}", "A bundled asset of the web UI"), [root](const Request& req) {
        std::string_view name = req.PathParam("file");
        auto file = ResolveStaticPath(root, "assets/" + std::string(name));
        if (!file.ok()) return Response::Error(file.status());
        return FileResponse(*file,
                            LooksHashed(name) ? "public, max-age=31536000, immutable" : "no-cache");
      }));
  return Status::Ok();
}

}  // namespace lakeloop::api
