#include "pkg/ko/lookup_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"

namespace ocicache::ko {

std::string LookupLogPath(const std::string& kocache) {
  if (const char* p = std::getenv("OCICACHE_KO_LOG"); p != nullptr && *p != '\0') {
    return std::string(p) == "off" ? "" : p;
  }
  if (kocache.empty()) return "";
  return kocache + "/ocicache-go.log";
}

std::string NowRfc3339() {
  char buf[32];
  time_t t = std::time(nullptr);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void AppendLookupLog(const std::string& path, const LookupEvent& ev) {
  if (path.empty()) return;
  nlohmann::ordered_json j;
  j["time"] = ev.time.empty() ? NowRfc3339() : ev.time;
  j["dir"] = ev.dir;
  j["buildid"] = ev.build_id;
  j["result"] = ev.result;
  j["registryRequests"] = ev.registry_requests;
  j["ms"] = std::round(ev.ms * 10) / 10;
  j["message"] = ev.message;
  std::string line =
      j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t n = write(fd, line.data(), line.size());
  (void)n;
  close(fd);
}

std::vector<LookupEvent> ConsumeLookupLog(const std::string& path) {
  std::vector<LookupEvent> out;
  if (path.empty()) return out;
  std::string taken = path + "." + std::to_string(getpid()) + ".reading";
  if (rename(path.c_str(), taken.c_str()) != 0) return out;
  std::ifstream in(taken, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  unlink(taken.c_str());
  std::string line;
  while (std::getline(ss, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    LookupEvent ev;
    ev.time = j.value("time", "");
    ev.dir = j.value("dir", "");
    ev.build_id = j.value("buildid", "");
    ev.result = j.value("result", "");
    ev.registry_requests = j.value("registryRequests", int64_t{0});
    ev.ms = j.value("ms", 0.0);
    ev.message = j.value("message", "");
    out.push_back(std::move(ev));
  }
  return out;
}

}  // namespace ocicache::ko
