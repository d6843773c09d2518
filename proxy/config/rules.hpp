#pragma once
// Internal to wsdrain_config: the cross-key rules behind validate(), each with the key path it
// is about, so that the loader can point at the offending node of a file.

#include "config/config.hpp"

#include <string>
#include <vector>

namespace wsdrain::config::detail {

struct rule_violation {
    std::string path;                 // the key the message is about, e.g. "routes[1].upstream"
    std::vector<std::string> inputs;  // other keys the verdict depends on
    std::string message;              // "routes[1].upstream: no upstream named 'chat'"
};

// Every rule of validate() that `cfg` breaks, in the order of SPEC section 5's keys.
std::vector<rule_violation> check_rules(const proxy_config& cfg);

}  // namespace wsdrain::config::detail
