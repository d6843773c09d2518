#pragma once
// Open WebSocket sessions per client address, for limits.max_sessions_per_client. Touched
// once when a session starts and once when it ends, never per frame.

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace wsdrain::net {

class client_sessions {
public:
    // Counts a session for `address` unless it already has `cap` (0: no cap).
    bool acquire(const std::string& address, std::uint64_t cap) {
        std::lock_guard lock(mutex_);
        auto& n = counts_[address];
        if (cap != 0 && n >= cap) {
            if (n == 0) counts_.erase(address);
            return false;
        }
        ++n;
        return true;
    }

    void release(const std::string& address) {
        std::lock_guard lock(mutex_);
        const auto it = counts_.find(address);
        if (it != counts_.end() && --it->second == 0) counts_.erase(it);
    }

    std::uint64_t count(const std::string& address) const {
        std::lock_guard lock(mutex_);
        const auto it = counts_.find(address);
        return it == counts_.end() ? 0 : it->second;
    }

private:
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::uint64_t> counts_;
};

}  // namespace wsdrain::net
