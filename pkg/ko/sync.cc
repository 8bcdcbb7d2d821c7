#include "pkg/ko/sync.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "pkg/cache/tiered_store.h"

namespace ocicache::ko {
namespace {

void Say(const Warn& warn, absl::string_view msg) {
  if (warn) warn(msg);
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

absl::StatusOr<SaveStats> Save(cache::Store* local, cache::Store* remote, const SaveOptions& opts) {
  if (local == nullptr && remote == nullptr) return absl::InvalidArgumentError("no store");
  auto dirs = FindBinDirs(opts.kocache, opts.warn);
  if (!dirs.ok()) return dirs.status();
  SaveStats st;
  st.dirs = static_cast<int>(dirs->size());
  cache::LookupOptions lookup;
  lookup.touch = false;

  // Whether a tier holds a usable entry for the key: NotFound, another ko
  // version, or an unreadable entry all mean "write it".
  auto has = [&](cache::Store* s, const std::string& key, absl::Status* err) {
    auto e = s->Lookup(key, lookup);
    if (!e.ok()) {
      if (!absl::IsNotFound(e.status())) *err = e.status();
      return false;
    }
    auto it = e->annotations.find(kAnnotationKoVersion);
    return KoVersionCompatible(it == e->annotations.end() ? "" : it->second, opts.tools.ko);
  };

  for (const auto& d : *dirs) {
    KoFiles files = ReadKoFiles(d.dir);
    for (const auto& p : files.problems) {
      ++st.invalid_files;
      Say(opts.warn, absl::StrCat(p, " (skipped; ko rewrites it on its next build)"));
    }
    for (Record r : CompleteRecords(files, &st.incomplete)) {
      r.import_path = d.import_path;
      r.platform = d.platform;
      auto entry = EntryFromRecord(r, opts.tools);
      if (!entry.ok()) {
        ++st.errors;
        Say(opts.warn, absl::StrCat(d.dir, ": build id ", r.build_id, ": ", entry.status().message()));
        continue;
      }
      bool need_local = false, need_remote = false;
      if (local != nullptr) {
        absl::Status err;
        need_local = !has(local, r.build_id, &err);
        if (!err.ok()) Say(opts.warn, absl::StrCat("local lookup of ", r.build_id, ": ", err.message()));
      }
      if (remote != nullptr && !st.registry_unavailable) {
        absl::Status err;
        need_remote = !has(remote, r.build_id, &err);
        if (!err.ok() && cache::IsOutage(err)) {
          st.registry_unavailable = true;
          need_remote = false;
          Say(opts.warn, absl::StrCat(remote->Describe(), " is unavailable, saving to the local tier only: ",
                                      err.message()));
        }
      }
      if (!need_local && !need_remote) {
        ++st.present;
        continue;
      }
      bool wrote = false, failed = false;
      if (need_local) {
        if (absl::Status s = local->Put(*entry); s.ok()) {
          wrote = true;
        } else {
          failed = true;
          Say(opts.warn, absl::StrCat("saving ", r.build_id, " to ", local->Describe(), ": ", s.message()));
        }
      }
      if (need_remote) {
        absl::Status s = remote->Put(*entry);
        if (s.ok()) {
          wrote = true;
        } else if (cache::IsOutage(s)) {
          st.registry_unavailable = true;
          failed = failed || local == nullptr;
          Say(opts.warn, absl::StrCat(remote->Describe(), " is unavailable, saving to the local tier only: ",
                                      s.message()));
        } else {
          failed = true;
          Say(opts.warn, absl::StrCat("saving ", r.build_id, " to ", remote->Describe(), ": ", s.message()));
        }
      }
      if (failed) {
        ++st.errors;
      } else if (wrote) {
        ++st.saved;
      } else {
        ++st.present;
      }
    }
  }
  return st;
}

absl::StatusOr<RestoreStats> Restore(cache::Store& store, const RestoreOptions& opts) {
  RestoreStats st;
  std::vector<cache::EntryInfo> infos;
  absl::Status ls = store.List([&](const cache::EntryInfo& info) {
    auto ip = info.annotations.find(kAnnotationImportPath);
    auto pl = info.annotations.find(kAnnotationPlatform);
    if (ip == info.annotations.end() || pl == info.annotations.end()) return true;  // not ko's
    ++st.listed;
    if (!opts.import_paths.empty() && !Contains(opts.import_paths, ip->second)) return true;
    if (!opts.platforms.empty() && !Contains(opts.platforms, pl->second)) return true;
    auto kv = info.annotations.find(kAnnotationKoVersion);
    if (!KoVersionCompatible(kv == info.annotations.end() ? "" : kv->second, opts.ko_version)) {
      ++st.skipped;
      return true;
    }
    infos.push_back(info);
    return true;
  });
  if (!ls.ok()) return ls;
  std::sort(infos.begin(), infos.end(), [](const cache::EntryInfo& a, const cache::EntryInfo& b) {
    if (a.created != b.created) return a.created > b.created;
    return a.key < b.key;
  });
  if (opts.max > 0 && static_cast<int>(infos.size()) > opts.max) infos.resize(opts.max);
  st.selected = static_cast<int>(infos.size());

  // Records by target directory, newest first within each.
  std::map<std::string, std::vector<Record>> by_dir;
  std::map<std::string, KoFiles> existing;
  cache::LookupOptions lookup;
  lookup.touch = false;
  for (const auto& info : infos) {
    auto dir = BinDir(opts.kocache, info.annotations.at(kAnnotationImportPath),
                      info.annotations.at(kAnnotationPlatform));
    if (!dir.ok()) {
      ++st.skipped;
      Say(opts.warn, absl::StrCat("entry ", info.key, ": ", dir.status().message(), "; skipped"));
      continue;
    }
    auto ex = existing.find(*dir);
    if (ex == existing.end()) ex = existing.emplace(*dir, ReadKoFiles(*dir)).first;
    auto b = ex->second.build_to_diff.find(info.key);
    if (b != ex->second.build_to_diff.end() && ex->second.diff_to_desc.count(b->second)) {
      ++st.present;  // no need to fetch it
      continue;
    }
    auto e = store.Lookup(info.key, lookup);
    if (!e.ok()) {
      if (absl::IsNotFound(e.status())) {
        ++st.skipped;
      } else {
        ++st.errors;
        Say(opts.warn, absl::StrCat("lookup of ", info.key, ": ", e.status().message()));
      }
      continue;
    }
    auto r = RecordFromEntry(*e);
    if (!r.ok()) {
      ++st.skipped;
      Say(opts.warn, absl::StrCat(r.status().message(), "; skipped"));
      continue;
    }
    by_dir[*dir].push_back(*std::move(r));
  }
  for (const auto& [dir, records] : by_dir) {
    auto m = MergeIntoDir(dir, records, opts.warn);
    if (!m.ok()) {
      st.errors += static_cast<int>(records.size());
      Say(opts.warn, absl::StrCat(dir, ": ", m.status().message()));
      continue;
    }
    st.restored += m->added;
    st.present += m->present;
    if (m->added > 0) ++st.dirs;
  }
  return st;
}

}  // namespace ocicache::ko
