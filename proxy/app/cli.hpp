#pragma once
// The subcommands that talk to a running wsdrain through its admin API (SPEC section 4):
//   wsdrain drain [--admin ADDR] [--wait] [--timeout DURATION]
//   wsdrain drain --fraction F [--spread DURATION] [--admin ADDR] [--wait] [--timeout DURATION]
//   wsdrain drain --upstream NAME [--endpoint HOST:PORT] [--admin ADDR] [--wait] [--timeout DURATION]
//   wsdrain undrain --upstream NAME [--endpoint HOST:PORT] [--admin ADDR] [--wait] [--timeout DURATION]
//   wsdrain status [--admin ADDR]
// A bearer token, when the admin listener needs one, comes from WSDRAIN_ADMIN_TOKEN.

#include <string>
#include <vector>

namespace wsdrain::app {

// `args` are the words after the subcommand. Returns the process exit status.
int drain_command(const std::vector<std::string>& args);
int undrain_command(const std::vector<std::string>& args);
int status_command(const std::vector<std::string>& args);

}  // namespace wsdrain::app
