// The demo backend: a WebSocket echo server (see backend.hpp) as a program.
//   demo_backend [--port N] [--host H] [--name NAME] [--deflate] [--subprotocol P]... [--report]
// Prints "listening on PORT" once it accepts connections; runs until SIGTERM or SIGINT. With
// --report it then prints one line per WebSocket session that ended, for the tests:
//   ended first="ID 7" close_frame=1 code=1012 messages=40 last_seq=39
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

#include "backend.hpp"

int main(int argc, char** argv) {
    wsdrain::testing::backend_options o;
    bool report = false;
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
        else if (a == "--report") report = true;
        else {
            std::cerr << "usage: demo_backend [--port N] [--host H] [--name NAME] [--deflate] [--subprotocol P] "
                         "[--report]\n";
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
    if (report) {
        for (const auto& e : b.ended())
            std::cout << "ended first=\"" << e.first_message << "\" close_frame=" << e.close_frame << " code=" << e.code
                      << " messages=" << e.messages << " last_seq=" << e.last_sequence << "\n";
        std::cout << "report done" << std::endl;
    }
    return 0;
}
