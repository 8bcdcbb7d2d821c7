// RegistryStore: a cache::Store over one OCI repository ("REGISTRY/REPO"),
// optionally split into N shard repositories "REPO/<shard>" for registries that
// cap the number of tags per repository.
//
// Entries are image manifests tagged by TagForKey(key) (see docs/FORMAT.md); a
// lookup is one manifest GET. Blobs live in REPO itself; with shards, an entry's
// blobs are cross-mounted into its shard repository at Put, because registries
// require a manifest's blobs in the manifest's own repository.
#ifndef OCICACHE_PKG_CACHE_REGISTRY_STORE_H_
#define OCICACHE_PKG_CACHE_REGISTRY_STORE_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pkg/cache/store.h"
#include "pkg/registry/client.h"

namespace ocicache::cache {

// Which registries a ClientPool may reach, and where explicit credentials go.
struct ClientPoolOptions {
  // The registry that ClientOptions::credentials (flags, environment) were given
  // for: clients for every other host are made without them, so a password never
  // reaches a host a caller or a recorded location names. Docker's config.json,
  // which keys its credentials by host, still applies to every host. Empty:
  // explicit credentials go nowhere.
  std::string home;
  // Servers set this: Get then refuses (PERMISSION_DENIED) every host but `home`
  // and those in `allowed` ("*" allows any), so a caller cannot make the server
  // send requests to an address of its choosing. Unset (the CLI), the user names
  // the hosts and any may be reached.
  bool restrict_hosts = false;
  std::set<std::string> allowed;
};

// Registry clients by host ("host[:port]", compared case-insensitively), created
// on demand: the cache's own registry, and others for mounts and copies from
// recorded locations.
class ClientPool {
 public:
  explicit ClientPool(registry::ClientOptions opts, ClientPoolOptions pool = {});
  absl::StatusOr<std::shared_ptr<registry::Client>> Get(const std::string& registry);

 private:
  registry::ClientOptions opts_;
  ClientPoolOptions pool_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<registry::Client>> clients_ ABSL_GUARDED_BY(mu_);
};

struct RegistryStoreOptions {
  // 0 or 1: no sharding. Otherwise 2..256 shard repositories.
  int shards = 0;
  // For MountBlob from other registries; may be null (then only same-registry mounts).
  std::shared_ptr<ClientPool> pool;
  // Listing records (records.h): a non-empty name makes this store a writer,
  // adding a row for each entry it puts or touches and pushing its current part
  // (from a thread of its own) once record_flush_rows rows wait or the oldest
  // waiting row is record_flush_age old, and when destroyed. Few pushes: each
  // rewrites the part (up to 10,000 rows). Long-lived processes set it
  // (ocicached); List reads records either way.
  std::string record_writer;
  size_t record_flush_rows = 1000;
  size_t record_part_rows = 10000;  // rows per part (records::kRowsPerPart; tests set less)
  absl::Duration record_flush_age = absl::Minutes(10);
};

class RegistryStore : public Store {
 public:
  static absl::StatusOr<std::unique_ptr<RegistryStore>> Create(
      std::shared_ptr<registry::Client> client, std::string repository,
      RegistryStoreOptions opts = {});

  std::string Describe() const override;

  absl::StatusOr<int64_t> StatBlob(const oci::Digest& digest) override;
  absl::Status ReadBlob(const oci::Digest& digest, int64_t offset, oci::ByteSink& sink) override;
  // One GET with Range: bytes=X-Y, no HEAD first.
  absl::Status ReadBlobRange(const oci::Digest& digest, int64_t offset, int64_t length,
                             oci::ByteSink& sink) override;
  // With an expected digest and a size of 16 KiB or more, a HEAD first: a blob
  // the registry has is not uploaded again. Smaller ones are uploaded at once.
  absl::StatusOr<oci::Descriptor> WriteBlob(const oci::Digest& expected, int64_t size,
                                            oci::ByteSource& source) override;
  absl::Status MountBlob(const Location& from) override;

  absl::StatusOr<Entry> Lookup(absl::string_view key, const LookupOptions& opts) override;
  // Lookup that also gives the digest of the manifest it read (for
  // DeleteManifest; with opts.touch a touch may replace that manifest).
  absl::StatusOr<Entry> LookupManifest(absl::string_view key, const LookupOptions& opts,
                                       oci::Digest* manifest_digest);
  absl::Status Put(const Entry& entry) override;
  absl::Status Delete(absl::string_view key) override;
  // One manifest GET (the truth), then the DELETE.
  absl::Status DeleteIfUnusedSince(absl::string_view key, absl::Time cutoff) override;
  // Deletes the manifest `digest` from `key`'s repository without reading it
  // first (one request): the registry drops the key's tag with it if the tag
  // still names that manifest; a manifest put under the key since stays, tag and
  // all. NotFound when the registry no longer has that manifest.
  absl::Status DeleteManifest(absl::string_view key, const oci::Digest& digest);
  // Entries named by listing records come from them; only tags no record
  // names cost a manifest GET each (all of them when there are no records).
  // Rows whose tag the registry no longer lists are skipped.
  absl::Status List(const std::function<bool(const EntryInfo&)>& fn) override;
  ~RegistryStore() override;  // pushes this writer's rows, for up to 2 s

  // Pushes this writer's current part now (no-op when nothing changed).
  absl::Status FlushRecords();
  // After a gc: writes `live` (what the last List emitted, minus what was
  // deleted) as one merged set of records, then deletes the record manifests
  // that List read. Rows of tags the registry does not hold are dropped when read.
  absl::Status ReplaceRecords(const std::vector<EntryInfo>& live);
  // Registry requests this store's client has sent (benchmarks).
  int64_t request_count() const { return client_->request_count(); }

  // Put for an entry whose blobs the caller has just written to this store (with
  // WriteBlob): skips the HEAD per blob that Put makes to check them, and uploads
  // the entry's small blobs (config, descriptor: unique per entry in practice)
  // without a HEAD first. 3 registry requests fewer per entry. (Any Put skips
  // small blobs this store has seen in the registry before.)
  absl::Status PutFresh(const Entry& entry);

  // The repository holding a key's manifest.
  std::string RepositoryForKey(absl::string_view key) const;
  // The Location of a blob in this store's repository.
  Location LocationOf(const oci::Descriptor& d) const;
  registry::Client& client() { return *client_; }
  const std::string& repository() const { return repo_; }
  int shards() const { return opts_.shards; }
  // The entry tags of every repository of this layout (one tag list each, no
  // manifest read) as a snapshot, when there are at most max_keys; a repository
  // the registry does not know holds none. Registries send a tag list whole
  // (distribution ignores `n`), so the list is read before the limit can apply:
  // call it where an empty or small repository is likely.
  absl::StatusOr<std::unique_ptr<const KeySnapshot>> SnapshotKeys(size_t max_keys) override;
  // The entry tags in each repository of this layout (the base repository, or
  // each shard in order): one tag list per repository, no manifest read.
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> CountEntryTags();

 private:
  // The repositories of this layout: the base one, or each shard in order.
  std::vector<std::string> Repositories() const;
  RegistryStore(std::shared_ptr<registry::Client> client, std::string repo,
                RegistryStoreOptions opts)
      : client_(std::move(client)), repo_(std::move(repo)), opts_(std::move(opts)) {}
  // kCheck: every blob must be in the store (a HEAD each); kTouch: the entry is
  // stored already, only its manifest changes; kFresh: see PutFresh.
  enum class PutMode { kCheck, kTouch, kFresh };
  absl::Status PutEncoded(const Entry& entry, PutMode mode);
  // Records: the row of a stored entry; pushing rows as part `part` of `writer`.
  void NoteRow(const Entry& entry, const std::string& tag, const oci::Digest& manifest_digest,
               absl::Time now);
  absl::Status PushRecord(const std::string& writer, int64_t part,
                          const std::vector<EntryInfo>& rows);
  void RecordLoop();
  absl::Status EnsureSmallBlob(const std::string& repo, const oci::Descriptor& d,
                               const std::string& bytes, bool ask_first, bool trust_known);
  // Streams a blob from `from_repo` (on `source`, else this store's registry) into
  // `to_repo` of this store's registry: the fallback when a mount is declined.
  absl::Status CopyBlob(const std::string& from_repo, const std::string& to_repo,
                        const oci::Digest& digest, int64_t size);
  absl::Status CopyBlob(registry::Client& source, const std::string& from_repo,
                        const std::string& to_repo, const oci::Digest& digest, int64_t size);

  std::shared_ptr<registry::Client> client_;
  std::string repo_;
  RegistryStoreOptions opts_;
  // "repo@digest" of small blobs seen in the registry by this store (bounded).
  absl::Mutex known_mu_;
  absl::flat_hash_set<std::string> known_small_ ABSL_GUARDED_BY(known_mu_);

  // This writer's rows of its current part, by tag.
  absl::Mutex rec_mu_;
  std::map<std::string, EntryInfo> rec_rows_ ABSL_GUARDED_BY(rec_mu_);
  int64_t rec_part_ ABSL_GUARDED_BY(rec_mu_) = 1;
  bool rec_dirty_ ABSL_GUARDED_BY(rec_mu_) = false;
  size_t rec_waiting_ ABSL_GUARDED_BY(rec_mu_) = 0;  // rows noted since the last push
  absl::Time rec_oldest_ ABSL_GUARDED_BY(rec_mu_) = absl::InfiniteFuture();
  bool rec_stopping_ ABSL_GUARDED_BY(rec_mu_) = false;
  // Record manifests (tag, digest) the last List read, for ReplaceRecords.
  std::vector<std::pair<std::string, oci::Digest>> records_read_ ABSL_GUARDED_BY(rec_mu_);
  std::thread rec_thread_;
};

}  // namespace ocicache::cache

#endif  // OCICACHE_PKG_CACHE_REGISTRY_STORE_H_
