// The demo backend: a WebSocket echo server (see backend.hpp) as a program.
//   demo_backend [--port N] [--host H] [--name NAME] [--deflate] [--subprotocol P]...
// Prints "listening on PORT" once it accepts connections; runs until killed.
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

#include "backend.hpp"

int main(int argc, char** argv) {
    wsdrain::testing::backend_options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << a << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--port") o.port = static_cast<std::uint16_t>(std::stoi(value()));
        else if (a == "--host") o.host = value();
        else if (a == "--name") o.name = value();
        else if (a == "--deflate") o.deflate = true;
        else if (a == "--subprotocol") o.subprotocols.push_back(value());
        else {
            std::cerr << "usage: demo_backend [--port N] [--host H] [--name NAME] [--deflate] [--subprotocol P]\n";
            return 2;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);  // the backend's thread inherits the mask
    wsdrain::testing::backend b{o};
    std::cout << "listening on " << b.port() << std::endl;
    int sig = 0;
    sigwait(&set, &sig);
    return 0;
}
