#pragma once
// Asio keeps an I/O object's implementation (its descriptor, state flags and reactor record)
// protected. A pointer to member formed through a derived class reaches it. Only the files
// that save syscalls Asio would make use this: net/readable_wait.cpp and net/sockets.cpp,
// both written against Boost 1.81.

namespace wsdrain::net::detail {

template <class IoObject>
struct implementation_of : IoObject {
    static auto& get(IoObject& o) { return (o.*(&implementation_of::impl_)).get_implementation(); }
};

}  // namespace wsdrain::net::detail
