#include "coordinator/group_book.h"

#include <algorithm>
#include <cstdint>

namespace coordinator {

namespace wire = common::wire;

namespace {

std::int64_t to_ms(double t) { return static_cast<std::int64_t>(t * 1000.0); }

wire::LeaseHost lease_host(const common::IndexedTarget& t) {
    return {t.index, t.target.address, t.target.ipv6, t.target.targetname,
            t.target.other_addresses};
}

}  // namespace

common::Result<GroupBook> GroupBook::open(store::Store& store, const common::TargetSources& sources,
                                          std::size_t group_size) {
    auto cur = common::TargetCursor::open(sources);
    if (!cur) return cur.status();
    return GroupBook(store, sources, std::move(*cur), std::max<std::size_t>(1, group_size));
}

common::Status GroupBook::restore(const store::Journal& j) {
    if (auto s = added_.restore(); !s) return s;
    targets_done_ = j.targets_done;
    next_group_id_ = j.next_group_id;
    if (auto r = store_->requeue_expired(INT64_MAX); !r) return r.status();
    auto gs = store_->groups();
    if (!gs) return gs.status();
    auto cnt = store_->count_results();
    if (!cnt) return cnt.status();
    hosts_done_ = *cnt;
    std::optional<common::TargetCursor> replay;
    std::uint64_t added_planned = AddedTargets::kBase;  // first script-added index in no group
    std::vector<std::uint64_t> complete;
    for (const auto& g : *gs) {
        hosts_total_ += g.hosts.size();
        bool added = !g.hosts.empty() && AddedTargets::is_added(g.hosts.front());
        if (added) added_planned = std::max(added_planned, g.hosts.back() + 1);
        if (g.state == store::GroupState::done) {
            ++groups_done_;
            continue;
        }
        auto mismatch = [&] {
            return common::Status::error("group " + std::to_string(g.id) +
                                         " does not match the targets");
        };
        BookGroup m;
        m.attempts = g.attempts;
        if (added) {
            for (auto index : g.hosts) {
                const wire::LeaseHost* h = added_.find(index);
                if (!h) return mismatch();
                m.hosts.push_back(*h);
            }
        } else {
            if (!replay) {
                auto c = common::TargetCursor::open(sources_);
                if (!c) return c.status();
                replay.emplace(std::move(*c));
            }
            auto pos = common::CursorPosition::decode(g.range_begin);
            if (!pos) return pos.status();
            if (auto s = replay->restore(*pos); !s) return s;
            auto hs = replay->next(g.hosts.size());
            if (!hs) return hs.status();
            if (hs->size() != g.hosts.size()) return mismatch();
            for (std::size_t i = 0; i < hs->size(); ++i) {
                if ((*hs)[i].index != g.hosts[i]) return mismatch();
                m.hosts.push_back(lease_host((*hs)[i]));
            }
        }
        for (const auto& h : m.hosts) {
            auto have = store_->result(h.index);
            if (!have) return have.status();
            if (*have) m.committed.insert(h.index);
        }
        // All committed: the previous coordinator stopped between the last commit and
        // complete_group.
        if (m.committed.size() == m.hosts.size())
            complete.push_back(g.id);
        else
            queue_.push_back(g.id);
        groups_.emplace(g.id, std::move(m));
    }
    for (auto gid : complete)
        if (auto r = complete_if_done(gid); !r) return r.status();
    added_.drop_below(added_planned);
    if (!j.cursor.empty()) {
        auto pos = common::CursorPosition::decode(j.cursor);
        if (!pos) return pos.status();
        if (auto s = cursor_.restore(*pos); !s) return s;
    }
    return common::Status::ok();
}

common::Status GroupBook::add_group(const store::Group& g, std::string_view cursor_after,
                                    BookGroup m) {
    if (auto s = store_->plan_group(g, cursor_after); !s) return s;
    hosts_total_ += m.hosts.size();
    groups_.emplace(g.id, std::move(m));
    queue_.push_back(g.id);
    return common::Status::ok();
}

common::Status GroupBook::plan(std::size_t want) {
    // Script-added hosts first: they are known already, and a /8 should not hide them.
    while (added_.has_pending() && queue_.size() < want) {
        store::Group g;
        g.id = next_group_id_++;
        BookGroup m;
        m.hosts = added_.take(group_size_);
        for (const auto& h : m.hosts)
            g.hosts.push_back(h.index);
        if (auto s = add_group(g, cursor_.position().encode(), std::move(m)); !s) return s;
    }
    while (!targets_done_ && queue_.size() < want) {
        auto before = cursor_.position();
        auto hs = cursor_.next(group_size_);
        if (!hs) return hs.status();
        if (hs->empty()) {
            if (auto s = store_->set_flag(store::JournalFlag::targets_done, true); !s) return s;
            targets_done_ = true;
            break;
        }
        store::Group g;
        g.id = next_group_id_++;
        BookGroup m;
        for (const auto& t : *hs) {
            g.hosts.push_back(t.index);
            m.hosts.push_back(lease_host(t));
        }
        g.range_begin = before.encode();
        g.range_end = cursor_.position().encode();
        if (auto s = add_group(g, g.range_end, std::move(m)); !s) return s;
    }
    return common::Status::ok();
}

common::Result<std::optional<wire::Lease>> GroupBook::lease_next(std::uint64_t worker,
                                                                 double deadline) {
    while (!queue_.empty()) {
        std::uint64_t gid = queue_.front();
        queue_.pop_front();
        auto& g = groups_.at(gid);
        auto r = store_->lease_group(gid, owner_of(worker), to_ms(deadline));
        if (!r) return r.status();
        if (!*r) continue;  // should not happen: the queue mirrors the store
        g.leased = true;
        g.worker = worker;
        g.deadline = deadline;
        ++g.attempts;
        wire::Lease lease;
        lease.group_id = gid;
        lease.attempt = g.attempts;
        lease.deadline = deadline;
        lease.hosts = g.hosts;
        return std::optional<wire::Lease>(std::move(lease));
    }
    return std::optional<wire::Lease>{};
}

GroupBook::Held GroupBook::held_by(std::uint64_t gid, std::uint64_t worker) const {
    auto it = groups_.find(gid);
    if (it != groups_.end())
        return it->second.leased && it->second.worker == worker ? Held::yes : Held::no;
    return gid < next_group_id_ ? Held::done : Held::no;
}

common::Status GroupBook::renew(std::uint64_t gid, std::uint64_t worker, double deadline) {
    auto r = store_->renew_lease(gid, owner_of(worker), to_ms(deadline));
    if (!r) return r.status();
    groups_.at(gid).deadline = deadline;
    return common::Status::ok();
}

bool GroupBook::requeue(std::uint64_t gid) {
    auto it = groups_.find(gid);
    if (it == groups_.end() || !it->second.leased) return false;
    it->second.leased = false;
    it->second.worker = 0;
    it->second.deadline = 0;
    queue_.push_front(gid);
    return true;
}

common::Result<std::vector<std::uint64_t>> GroupBook::requeue_worker(std::uint64_t worker) {
    if (auto r = store_->requeue_owner(owner_of(worker)); !r) return r.status();
    auto ids = leases_of(worker);
    for (auto gid : ids)
        requeue(gid);
    return ids;
}

common::Result<std::vector<std::uint64_t>> GroupBook::requeue_expired(double now) {
    std::vector<std::uint64_t> ids;
    for (auto& [gid, g] : groups_)
        if (g.leased && g.deadline < now) ids.push_back(gid);
    if (ids.empty()) return ids;
    if (auto r = store_->requeue_expired(to_ms(now)); !r) return r.status();
    for (auto gid : ids)
        requeue(gid);
    std::sort(queue_.begin(), queue_.end());
    return ids;
}

common::Result<GroupBook::Commit> GroupBook::commit(std::uint64_t gid, const wire::LeaseHost& host,
                                                    std::string_view bytes) {
    auto it = groups_.find(gid);
    if (it == groups_.end())
        return gid < next_group_id_ ? Commit::finished_group : Commit::unknown_group;
    auto& g = it->second;
    auto h = std::find_if(g.hosts.begin(), g.hosts.end(),
                          [&](const wire::LeaseHost& x) { return x.index == host.index; });
    if (h == g.hosts.end() || h->address != host.address) return Commit::not_in_group;
    if (g.committed.count(host.index)) return Commit::duplicate;
    // Late results from an old holder still count when the host was never committed.
    auto r = store_->commit_host(host.index, bytes);
    if (!r) return r.status();
    g.committed.insert(host.index);
    if (r->already_committed) return Commit::duplicate;
    ++hosts_done_;
    if (auto c = complete_if_done(gid); !c) return c.status();
    return Commit::committed;
}

std::size_t GroupBook::mark_all_committed(std::uint64_t gid) {
    auto& g = groups_.at(gid);
    std::size_t n = 0;
    for (const auto& h : g.hosts)
        if (g.committed.insert(h.index).second) ++n;
    hosts_done_ += n;
    return n;
}

common::Result<GroupBook::Done> GroupBook::group_done(std::uint64_t gid, std::uint64_t worker,
                                                      std::uint32_t max_failures) {
    auto it = groups_.find(gid);
    if (it == groups_.end()) return Done::unknown;  // already complete
    auto& g = it->second;
    if (!g.leased || g.worker != worker) return Done::not_holder;
    if (g.committed.size() == g.hosts.size()) {
        if (auto r = complete_if_done(gid); !r) return r.status();
        return Done::complete;
    }
    if (++g.failures >= max_failures) return Done::failing;
    if (auto r = store_->renew_lease(gid, owner_of(worker), 0); !r) return r.status();
    if (auto r = store_->requeue_expired(0); !r) return r.status();
    requeue(gid);
    return Done::requeued;
}

common::Result<bool> GroupBook::complete_if_done(std::uint64_t gid) {
    auto it = groups_.find(gid);
    if (it == groups_.end() || it->second.committed.size() != it->second.hosts.size()) return false;
    auto r = store_->complete_group(gid);
    if (!r) return r.status();
    queue_.erase(std::remove(queue_.begin(), queue_.end(), gid), queue_.end());
    groups_.erase(it);
    ++groups_done_;
    return true;
}

std::uint64_t GroupBook::frontier() const {
    std::uint64_t f = UINT64_MAX;
    for (const auto& [gid, g] : groups_)
        for (const auto& h : g.hosts)
            if (h.index < f && !g.committed.count(h.index)) f = h.index;
    if (!targets_done_) f = std::min(f, cursor_.position().index);
    if (added_.has_pending()) f = std::min(f, added_.first_pending());
    return f;
}

std::vector<std::uint64_t> GroupBook::leases_of(std::uint64_t worker) const {
    std::vector<std::uint64_t> out;
    for (const auto& [gid, g] : groups_)
        if (g.leased && g.worker == worker) out.push_back(gid);
    return out;
}

const BookGroup* GroupBook::group(std::uint64_t gid) const {
    auto it = groups_.find(gid);
    return it == groups_.end() ? nullptr : &it->second;
}

}  // namespace coordinator
