#include "relay/tunnel.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/intrusive_ptr.hpp>

#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "config/config.hpp"
#include "log/log.hpp"
#include "net/client_sessions.hpp"
#include "net/stream.hpp"
#include "routing/router.hpp"

namespace wsdrain::relay {

using boost::system::error_code;
using ptr = boost::intrusive_ptr<tunnel>;

const char* to_string(leg_phase p) {
    switch (p) {
        case leg_phase::open: return "open";
        case leg_phase::close_sent: return "close_sent";
        case leg_phase::close_received: return "close_received";
        case leg_phase::closed: return "closed";
        case leg_phase::failed: return "failed";
        case leg_phase::gone: return "gone";
    }
    return "?";
}

// The bytes one relay step sends to a leg: ranges of the input in place, plus the few
// bytes that must be copied (a frame carried over from the previous read, an injected
// frame). When the segments run out the batch spills into the leg's pending buffer.
class tunnel::batch {
public:
    static constexpr std::size_t max_segments = 64;

    explicit batch(std::vector<std::uint8_t>& spill) : spill_(spill) {}

    void add(const std::uint8_t* p, std::size_t n) {
        if (n == 0) return;
        if (count_ == max_segments) spill();
        segments_[count_++] = asio::const_buffer(p, n);
    }

    void add_copy(std::span<const std::uint8_t> bytes) {
        if (bytes.empty()) return;
        if (arena_used_ + bytes.size() > sizeof arena_) spill();
        std::memcpy(arena_ + arena_used_, bytes.data(), bytes.size());
        add(arena_ + arena_used_, bytes.size());
        arena_used_ += bytes.size();
    }

    bool empty() const { return count_ == 0 && spill_.empty(); }
    std::span<const asio::const_buffer> segments() const { return {segments_.data(), count_}; }

    // Appends the segment bytes after the first `written` ones to the spill buffer.
    void keep_unwritten(std::size_t written) {
        for (std::size_t i = 0; i < count_; ++i) {
            const auto* p = static_cast<const std::uint8_t*>(segments_[i].data());
            const std::size_t n = segments_[i].size();
            if (written >= n) {
                written -= n;
                continue;
            }
            spill_.insert(spill_.end(), p + written, p + n);
            written = 0;
        }
        count_ = 0;
    }

    void spill() { keep_unwritten(0), arena_used_ = 0; }
    void clear() { count_ = 0, arena_used_ = 0; }

private:
    std::vector<std::uint8_t>& spill_;
    std::array<asio::const_buffer, max_segments> segments_;
    std::size_t count_ = 0;
    std::uint8_t arena_[1024];
    std::size_t arena_used_ = 0;
};

// One TLS record's plaintext at most.
constexpr std::size_t tls_read_size = 16 * 1024;

tunnel::leg::leg(net::leg_transport&& t, net::readable_wait::callback on_readable, tunnel* owner)
    : socket(std::move(t.socket)), readable(on_readable, owner), tls(std::move(t.tls)) {
    if (tls) tls_input = std::make_unique<std::uint8_t[]>(tls_read_size);
}
tunnel::leg::~leg() = default;

tcp::socket& tunnel::leg::raw() { return tls ? tls->next_layer().socket() : socket; }

tunnel::tunnel(net::worker& w, net::leg_transport downstream, net::leg_transport upstream, tunnel_params params)
    : net::deadline(&tunnel::on_deadline),
      worker_(w),
      params_(std::move(params)),
      legs_{leg{std::move(downstream), &tunnel::on_readable<leg_id::downstream>, this},
            leg{std::move(upstream), &tunnel::on_readable<leg_id::upstream>, this}},
      streams_{{codec::frame_scanner{{true, params_.allowed_rsv, params_.max_frame_bytes}}},
               {codec::frame_scanner{{false, params_.allowed_rsv, params_.max_frame_bytes}}}},
      id_(w.next_session_id()),
      started_(clock::now()),
      last_downstream_activity_(started_) {}

tunnel::~tunnel() = default;

void tunnel::start(net::worker& w, net::leg_transport downstream, net::leg_transport upstream, tunnel_params params,
                   std::span<const std::uint8_t> downstream_early, std::span<const std::uint8_t> upstream_early,
                   const config::drain_config& drain) {
    // Both sockets already have TCP_NODELAY (the front sets it), and plain legs are read and
    // written with MSG_DONTWAIT: no socket option to set here.
    ptr self{new tunnel(w, std::move(downstream), std::move(upstream), std::move(params))};
    (w.closing_sessions() ? w.closing() : w.sessions()).push_back(*self);
    w.stats().upstreams[self->params_.endpoint->metrics_slot()].sessions_active.add(1);
    if (self->params_.ping_interval.count() > 0) self->next_ping_ = self->started_ + self->params_.ping_interval;
    self->arm_timer();

    if (!upstream_early.empty()) self->relay(leg_id::upstream, upstream_early.data(), upstream_early.size());
    if (!downstream_early.empty()) self->relay(leg_id::downstream, downstream_early.data(), downstream_early.size());
    self->begin_reading(leg_id::downstream);
    self->begin_reading(leg_id::upstream);
    const auto reason = [&](std::string_view r) {
        return drain.reconnect_hint ? config::with_reconnect_hint(r, config::draw_retry_after(*drain.reconnect_hint, w.random()))
                                    : std::string(r);
    };
    if (w.closing_sessions()) {
        self->drain_close(drain.close_code, reason(drain.close_reason), net::drain_kind::full);
    } else if (self->params_.endpoint->drained()) {  // drained while this upgrade was under way
        self->drain_close(codec::close_code::service_restart, reason(net::endpoint_drain_reason), net::drain_kind::endpoint);
    }
}

// --- reading ---------------------------------------------------------------------------

namespace {

error_code last_error() { return {errno, boost::system::system_category()}; }

}  // namespace

// A plain leg starts with the wait that registers EPOLLRDHUP: its re-arm reports whatever
// came after the handshake's last read, so no recv is spent to find the socket empty.
void tunnel::begin_reading(leg_id from) {
    const leg& src = leg_of(from);
    const bool can_wait = !src.tls && !src.watching_shutdown && !src.waiting && !src.finished && !src.eof &&
                          !leg_of(other(from)).writing;
    if (can_wait) return watch_shutdown(from);
    read(from);
}

void tunnel::read(leg_id from) {
    leg& src = leg_of(from);
    const leg& dst = leg_of(other(from));
    if (src.tls) return read_tls(from);
    if (src.waiting || src.finished || src.eof) return;
    if (dst.writing) {
        src.paused = true;  // resumed when dst's pending bytes are written
        return;
    }
    // Epoll is edge-triggered: a leg reads until the socket is empty, and only then waits. A
    // short read empties it, unless the peer's FIN (or bytes behind an urgent byte's mark) is
    // queued behind what it returned: the edge that reported both is gone. So a plain leg
    // registers EPOLLRDHUP with its first wait (begin_reading, or here if it could not wait
    // then; see net/readable_wait.hpp), and after a short read it waits at once unless the
    // event reported the peer's shutdown or urgent data.
    for (int round = 0; round < 4; ++round) {
        ssize_t got;
        do got = ::recv(src.socket.native_handle(), worker_.scratch(), params_.read_size, MSG_DONTWAIT);
        while (got < 0 && errno == EINTR);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait_readable(from);
        if (got < 0) return on_end(from, last_error());
        if (got == 0) return on_end(from, asio::error::eof);
        src.input_empty = static_cast<std::size_t>(got) < params_.read_size;
        relay(from, worker_.scratch(), static_cast<std::size_t>(got));
        // Relaying may have read this leg again (send_fin_if_done reads on to the peer's FIN)
        // and left it waiting: that read carries on from here.
        if (src.finished || src.eof || src.waiting) return;
        if (dst.writing) {
            src.paused = true;
            return;
        }
        if (src.input_empty) {
            if (!src.watching_shutdown) return watch_shutdown(from);
            if (!net::readable_wait::input_may_remain(src.socket)) return wait_readable(from);
        }
    }
    // A busy leg yields to the other sessions of this thread before reading on.
    src.waiting = true;
    asio::post(worker_.context(), [self = ptr(this), from] {
        self->leg_of(from).waiting = false;
        self->read(from);
    });
}

// A TLS leg reads asynchronously into its own buffer (OpenSSL keeps state between records, so
// the thread's scratch buffer cannot be lent to it). Bytes that arrive while the other leg is
// still being written are held there, and relayed when that write ends.
void tunnel::read_tls(leg_id from) {
    leg& src = leg_of(from);
    const leg& dst = leg_of(other(from));
    if (src.waiting || src.finished || src.eof) return;
    if (dst.writing) {
        src.paused = true;
        return;
    }
    if (src.tls_held != 0) {
        const std::size_t n = std::exchange(src.tls_held, 0);
        relay(from, src.tls_input.get(), n);
        return read_tls(from);
    }
    src.waiting = true;
    src.tls->async_read_some(asio::buffer(src.tls_input.get(), std::min<std::size_t>(tls_read_size, params_.read_size)),
                             [self = ptr(this), from](const error_code& ec, std::size_t n) {
                                 leg& l = self->leg_of(from);
                                 l.waiting = false;
                                 if (l.finished) return;
                                 // After our close_notify OpenSSL reports the end at once (as
                                 // truncated while ours is still being written); the peer's FIN
                                 // is still to be waited for, on the bare socket.
                                 if (l.fin_sent && (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated))
                                     return self->read_to_fin(from);
                                 if (ec) return self->on_end(from, ec);
                                 l.tls_held = n;
                                 self->read_tls(from);
                             });
}

void tunnel::read_to_fin(leg_id from) {
    leg& src = leg_of(from);
    src.waiting = true;
    src.raw().async_read_some(asio::buffer(src.tls_input.get(), tls_read_size),
                              [self = ptr(this), from](const error_code& ec, std::size_t) {
                                  leg& l = self->leg_of(from);
                                  l.waiting = false;
                                  if (l.finished) return;
                                  if (ec) return self->on_end(from, ec);
                                  self->read_to_fin(from);  // the peer's last TLS records: not needed
                              });
}

// Waits without re-arming the descriptor (see net/readable_wait.hpp): this is only called
// after recv would block, and the socket is registered edge-triggered for input from the start.
void tunnel::wait_readable(leg_id from) {
    leg& src = leg_of(from);
    if (src.waiting) return;  // one wait at a time: its operation lives in the leg
    src.waiting = true;
    intrusive_ptr_add_ref(this);  // given back by on_readable
    src.readable.start(src.socket);
}

// Registers EPOLLRDHUP for the leg and waits (one epoll_ctl, which re-arms the descriptor, so
// it may follow a short read).
void tunnel::watch_shutdown(leg_id from) {
    leg& src = leg_of(from);
    src.watching_shutdown = true;
    src.waiting = true;
    intrusive_ptr_add_ref(this);  // given back by on_readable
    src.readable.start_watching_shutdown(src.socket);
}

template <leg_id From>
void tunnel::on_readable(void* owner, const error_code* ec) {
    const ptr self(static_cast<tunnel*>(owner), false);  // adopts the wait's reference
    if (ec == nullptr) return;                           // the event loop shut down
    leg& l = self->leg_of(From);
    l.waiting = false;
    if (l.finished) return;
    if (*ec) return self->on_end(From, *ec);
    self->read(From);
}

// --- relaying --------------------------------------------------------------------------

void tunnel::relay(leg_id from, const std::uint8_t* data, std::size_t size) {
    const leg_id to = other(from);
    leg& src = leg_of(from);
    leg& dst = leg_of(to);
    stream& s = stream_from(from);
    if (from == leg_id::downstream) last_downstream_activity_ = clock::now();
    if (src.phase == leg_phase::failed) return;  // a leg that broke the protocol is not read

    batch out(dst.pending);
    std::size_t run = 0;  // start of the input bytes relayed as they are
    for (std::size_t pos = 0; pos < size;) {
        const codec::scan_event e = s.scanner.next(data + pos, size - pos);
        bool keep = false;
        switch (e.kind) {
            case codec::event_kind::error:
                out.add(data + run, pos - run);
                flush(to, out);
                on_protocol_error(from, e.error);
                return;
            case codec::event_kind::need_more:
                break;  // carried in the scanner; relayed with the event that completes it
            case codec::event_kind::data:
                if (e.frame_start) {
                    const auto& f = s.scanner.frame();
                    s.dropping = !accepts_frames(dst.phase) || has_sent_close(src.phase);
                    if (s.dropping) {
                        count_drop(from, dst.phase == leg_phase::gone ? metrics::drop_reason::peer_gone
                                                                      : metrics::drop_reason::after_close);
                    } else {
                        ++s.frames;
                        s.bytes += f.header_size + f.payload_size;
                    }
                }
                keep = !s.dropping;
                break;
            case codec::event_kind::control:
                keep = on_control(from, e, data + pos);
                break;
        }
        if (!keep || !e.head.empty()) {
            out.add(data + run, pos - run);
            if (keep) out.add_copy(e.head);
            run = keep ? pos + e.skip : pos + e.consumed;
        }
        pos += e.consumed;
        if (e.frame_end) {
            s.dropping = false;
            if (injection_due(to)) {  // a Close or Ping for dst goes in right here, between frames
                out.add(data + run, pos - run);
                run = pos;
                inject(to, out);
            }
        }
    }
    out.add(data + run, size - run);
    flush(to, out);
    publish_counts();

    pump_injections(to);
    pump_injections(from);
    send_fin_if_done(to);
    send_fin_if_done(from);
}

bool tunnel::on_control(leg_id from, const codec::scan_event& e, const std::uint8_t* input) {
    const leg_id to = other(from);
    leg& src = leg_of(from);
    leg& dst = leg_of(to);
    stream& s = stream_from(from);
    const auto& f = s.scanner.frame();

    if (has_sent_close(src.phase)) {  // nothing may follow a Close
        count_drop(from, metrics::drop_reason::after_close);
        return false;
    }
    std::uint8_t payload[codec::max_control_payload];
    const std::size_t n = s.scanner.control_payload(e, input, payload);

    if (f.opcode == codec::opcode::pong && from == leg_id::downstream && pong_deadline_ != clock::time_point::max() &&
        n == sizeof id_ && std::memcmp(payload, &id_, n) == 0) {
        pong_deadline_ = clock::time_point::max();  // the answer to our keepalive Ping
        return false;
    }

    if (f.opcode == codec::opcode::close) {
        const codec::close_payload c = codec::parse_close({payload, n});
        if (!close_seen_) {
            close_seen_ = true;
            close_initiator_ = from;
            first_close_code_ = c.code;
            close_started_ = clock::now();
        }
        src.phase = after_close_from(src.phase);
        if (close_deadline_ == clock::time_point::max()) {
            close_deadline_ = clock::now() + params_.close_timeout;
            arm_timer();
        }
        if (accepts_frames(dst.phase)) {  // relay it: it is dst's Close now
            dst.phase = after_close_to(dst.phase);
            dst.close_code = 0;  // a Close we meant to inject is no longer needed
            dst.ping_due = false;
            ++s.frames;
            s.bytes += f.header_size + f.payload_size;
            return true;
        }
        // dst already had a Close from us (this one answers it) or is gone: if src still
        // waits for an answer, the proxy gives it.
        if (src.phase == leg_phase::close_received)
            queue_close(from, dst.phase == leg_phase::closed || dst.phase == leg_phase::close_sent
                                  ? c.code
                                  : close_code_when_gone(to),
                        "");
        return false;
    }

    if (!accepts_frames(dst.phase)) {
        count_drop(from, dst.phase == leg_phase::gone ? metrics::drop_reason::peer_gone
                                                      : metrics::drop_reason::after_close);
        return false;
    }
    ++s.frames;
    s.bytes += f.header_size + f.payload_size;
    return true;
}

void tunnel::on_protocol_error(leg_id from, codec::scan_error err) {
    const leg_id to = other(from);
    const std::uint16_t code = codec::close_code_for(err);
    log::debug("protocol error", {{"session", id_},
                                  {"from", from == leg_id::downstream ? "client" : "backend"},
                                  {"error", codec::to_string(err)}});
    verdict_ = verdict::error;
    // RFC 6455 7.1.7: fail the connection; the offender gets a Close and is read no more.
    queue_close(from, code, codec::to_string(err));
    leg_of(from).phase = leg_phase::failed;
    // The other side is told too: a client's fault is passed on as it is; a backend's is a
    // bad gateway to the client, except a frame too big, which is 1009 everywhere.
    const std::uint16_t other_code =
        from == leg_id::downstream || code == codec::close_code::too_big ? code : codec::close_code::bad_gateway;
    queue_close(to, other_code, from == leg_id::downstream ? "client protocol error" : "backend protocol error");
    pump_injections(from);
    pump_injections(to);
    send_fin_if_done(from);
    send_fin_if_done(to);
}

// --- writing ---------------------------------------------------------------------------

void tunnel::flush(leg_id to, batch& out) {
    leg& dst = leg_of(to);
    if (out.empty()) return;
    if (dst.finished) {
        out.clear();
        dst.pending.clear();
        return;
    }
    // Never called while `pending` is being written (that write holds its memory): a leg is
    // not read while the other one is written to, and injections wait for the write to end.
    assert(!dst.writing);
    if (dst.tls) {  // TLS is written asynchronously, from one buffer (one record per write)
        out.spill();
        return start_write(to);
    }
    std::array<iovec, batch::max_segments + 1> buffers;
    std::size_t count = 0;
    if (!dst.pending.empty()) buffers[count++] = {dst.pending.data(), dst.pending.size()};
    for (const auto& b : out.segments()) buffers[count++] = {const_cast<void*>(b.data()), b.size()};

    // One piece (the usual case: whole frames passed on as read) goes with send(), which
    // spares the kernel copying in a message header and an iovec array.
    const int fd = dst.socket.native_handle();
    msghdr msg{};
    msg.msg_iov = buffers.data();
    msg.msg_iovlen = count;
    ssize_t sent;
    do sent = count == 1 ? ::send(fd, buffers[0].iov_base, buffers[0].iov_len, MSG_DONTWAIT | MSG_NOSIGNAL)
                         : ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    std::size_t written = 0;
    if (sent >= 0) {
        written = static_cast<std::size_t>(sent);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        const error_code ec = last_error();
        out.clear();
        dst.pending.clear();
        return on_end(to, ec);
    }
    if (!dst.pending.empty()) {
        const std::size_t from_pending = std::min(written, dst.pending.size());
        dst.pending.erase(dst.pending.begin(), dst.pending.begin() + static_cast<std::ptrdiff_t>(from_pending));
        written -= from_pending;
    }
    out.keep_unwritten(written);
    if (!dst.pending.empty()) start_write(to);
}

void tunnel::start_write(leg_id to) {
    leg& dst = leg_of(to);
    dst.writing = true;
    auto done = [self = ptr(this), to](const error_code& ec, std::size_t) {
        leg& l = self->leg_of(to);
        l.writing = false;
        if (l.finished) return;
        l.pending.clear();
        if (l.pending.capacity() > 4 * net::worker::scratch_size) std::vector<std::uint8_t>().swap(l.pending);
        if (ec) return self->on_end(to, ec);
        self->pump_injections(to);
        self->send_fin_if_done(to);
        self->resume_reader_of(to);
    };
    if (dst.tls) asio::async_write(*dst.tls, asio::buffer(dst.pending), std::move(done));
    else asio::async_write(dst.socket, asio::buffer(dst.pending), std::move(done));
}

// A write to `to` ended: the leg that waited for it is read again.
void tunnel::resume_reader_of(leg_id to) {
    leg& src = leg_of(other(to));
    if (src.paused && !leg_of(to).writing) {
        src.paused = false;
        read(other(to));
    }
}

// --- the proxy's own frames -------------------------------------------------------------

void tunnel::queue_close(leg_id to, std::uint16_t code, std::string_view reason) {
    leg& l = leg_of(to);
    if (l.finished || l.close_code != 0 || !accepts_frames(l.phase)) return;
    l.close_code = code;
    l.close_reason.assign(reason);
    if (!close_seen_) {
        close_seen_ = true;
        close_by_proxy_ = true;
        first_close_code_ = code;
        close_started_ = clock::now();
    }
    if (close_deadline_ == clock::time_point::max()) {
        close_deadline_ = clock::now() + params_.close_timeout;
        arm_timer();
    }
}

bool tunnel::injection_due(leg_id to) const {
    const leg& dst = legs_[index(to)];
    if (dst.finished || dst.writing || (dst.close_code == 0 && !dst.ping_due)) return false;
    const stream& in = streams_[index(other(to))];
    if (in.scanner.inside_data_frame() && !in.dropping) return false;  // only between frames
    // A drain's Close waits (a bounded while) for the message in flight to the client to end,
    // so that no client is left holding half a message.
    if (to == leg_id::downstream && dst.close_code != 0 && message_wait_until_ != clock::time_point::max())
        return !in.scanner.inside_message() || in.dropping || clock::now() >= message_wait_until_;
    return true;
}

void tunnel::inject(leg_id to, batch& out) {
    leg& dst = leg_of(to);
    codec::mask_key key;
    const codec::mask_key* mask = nullptr;
    if (to == leg_id::upstream) {  // the proxy is the client on this leg: frames are masked
        const std::uint64_t r = worker_.random();
        std::memcpy(key.data(), &r, key.size());
        mask = &key;
    }
    std::uint8_t frame[codec::max_control_frame];
    std::size_t n;
    if (dst.close_code != 0) {
        n = codec::write_close(frame, dst.close_code, dst.close_reason, mask);
        dst.phase = after_close_to(dst.phase);
        dst.close_code = 0;
        dst.ping_due = false;
        message_wait_until_ = clock::time_point::max();
        // The peer has close_timeout from now to answer (a forced close: force_linger).
        const auto answer_by = clock::now() + (verdict_ == verdict::forced ? force_linger : params_.close_timeout);
        close_deadline_ = close_deadline_ == clock::time_point::max() ? answer_by : std::max(close_deadline_, answer_by);
        arm_timer();
    } else {
        n = codec::write_control(frame, codec::opcode::ping,
                                 {reinterpret_cast<const std::uint8_t*>(&id_), sizeof id_}, mask);
        dst.ping_due = false;
    }
    const auto d = static_cast<std::size_t>(direction_from(other(to)));
    worker_.stats().frames[d].add();
    worker_.stats().bytes[d].add(n);
    out.add_copy({frame, n});
}

void tunnel::pump_injections(leg_id to) {
    if (!injection_due(to)) return;
    batch out(leg_of(to).pending);
    inject(to, out);
    flush(to, out);
}

// --- ending ----------------------------------------------------------------------------

void tunnel::on_end(leg_id from, const error_code& ec) {
    leg& l = leg_of(from);
    if (l.finished) return;
    l.eof = true;
    if (wants_fin(l.phase)) {  // the expected end of a closed leg
        if (!l.writing) close_leg(from);
        return;
    }
    log::debug("leg ended", {{"session", id_},
                             {"leg", from == leg_id::downstream ? "client" : "backend"},
                             {"phase", to_string(l.phase)},
                             {"error", ec.message()}});
    l.phase = after_end(l.phase);
    if (verdict_ == verdict::none) verdict_ = verdict::error;
    const leg_id to = other(from);
    const stream& in = stream_from(from);
    close_leg(from);
    if (!accepts_frames(leg_of(to).phase) || leg_of(to).finished) return;
    if (in.scanner.inside_data_frame() && !in.dropping) {
        // The frame in flight to the survivor can never end, so no Close can follow it.
        close_leg(to);
        return;
    }
    queue_close(to, close_code_when_gone(from), from == leg_id::upstream ? "backend went away" : "client went away");
    pump_injections(to);
    send_fin_if_done(to);
}

void tunnel::send_fin_if_done(leg_id l) {
    leg& x = leg_of(l);
    if (x.finished || x.fin_sent || x.writing || x.close_code != 0 || !wants_fin(x.phase)) return;
    x.fin_sent = true;
    if (x.tls) {
        // TLS: close_notify first, then FIN. Marking the peer's close_notify as received makes
        // the shutdown complete once ours is written, without waiting for the peer's.
        // The leg counts as writing until then, so that the peer's end does not close it first.
        SSL_set_shutdown(x.tls->native_handle(), SSL_RECEIVED_SHUTDOWN);
        x.writing = true;
        x.tls->async_shutdown([self = ptr(this), l](const error_code&) {
            leg& y = self->leg_of(l);
            y.writing = false;
            if (y.finished) return;
            error_code ignored;
            y.raw().shutdown(tcp::socket::shutdown_send, ignored);
            // Closing with the peer's bytes unread would reset: read on to its FIN (bounded by
            // the close deadline).
            if (y.eof) self->close_leg(l);
            else self->read(l);
            self->resume_reader_of(l);
        });
        if (!x.waiting) read(l);
        return;
    }
    // The closing handshake is complete and nothing is left unread: close at once, as nginx
    // does. close() sends FIN; only unread input would make it a reset, and after its Close
    // the peer sends nothing more.
    if (x.phase == leg_phase::closed && x.input_empty) return close_leg(l);
    error_code ec;
    x.raw().shutdown(tcp::socket::shutdown_send, ec);
    // Read on until the peer's FIN so that closing never resets; the deadline bounds it.
    if (x.eof || ec) close_leg(l);
    else if (!x.waiting) read(l);
}

void tunnel::close_leg(leg_id l) {
    leg& x = leg_of(l);
    if (x.finished) return;
    x.finished = true;
    error_code ec;
    if (!x.fin_sent) x.raw().shutdown(tcp::socket::shutdown_both, ec);
    x.raw().close(ec);
    x.pending.clear();
    if (leg_of(other(l)).finished) finish();
}

void tunnel::drain_close(std::uint16_t code, const std::string& reason, net::drain_kind kind) {
    if (finished_ || close_seen_) return;  // a close is already under way: it goes on as it is
    drained_ = true;
    drain_kind_ = kind;
    message_wait_until_ = clock::now() + message_boundary_wait;
    queue_close(leg_id::downstream, code, reason);
    pump_injections(leg_id::downstream);
    arm_timer();
}

void tunnel::force_close() {
    if (finished_) return;
    // A Close on each leg now (between frames), FIN once it is written, and at most
    // force_linger for the answers: peers that reply see a clean close, not a reset.
    if (verdict_ == verdict::none) verdict_ = verdict::forced;
    message_wait_until_ = clock::time_point::max();
    for (leg_id l : {leg_id::downstream, leg_id::upstream}) {
        queue_close(l, codec::close_code::going_away, "proxy shutting down");
        pump_injections(l);
        send_fin_if_done(l);
    }
    if (finished_) return;
    close_deadline_ = std::min(close_deadline_, clock::now() + force_linger);
    arm_timer();
}

void tunnel::finish() {
    if (finished_) return;
    finished_ = true;
    worker_.deadlines().cancel(*this);
    session_link::unlink();
    publish_counts();

    const auto now = clock::now();
    const bool clean = verdict_ == verdict::none && legs_[0].phase == leg_phase::closed &&
                       legs_[1].phase == leg_phase::closed;
    metrics::close_reason reason = metrics::close_reason::error;
    if (verdict_ == verdict::idle) reason = metrics::close_reason::idle;
    else if (clean && !close_by_proxy_)
        reason = close_initiator_ == leg_id::downstream ? metrics::close_reason::client : metrics::close_reason::backend;
    else if (drained_ || (verdict_ == verdict::forced && worker_.draining()))
        reason = clean ? metrics::close_reason::drain_clean : metrics::close_reason::drain_forced;

    metrics::thread_shard& stats = worker_.stats();
    auto& up = stats.upstreams[params_.endpoint->metrics_slot()];
    up.sessions_active.add(-1);
    up.sessions_closed[static_cast<std::size_t>(reason)].add();
    const double duration = std::chrono::duration<double>(now - started_).count();
    up.session_duration.observe(duration);
    if (clean) stats.close_handshake.observe(std::chrono::duration<double>(now - close_started_).count());
    if (worker_.draining()) (clean ? stats.drain_closed_clean : stats.drain_closed_forced).add();
    else if (drained_ && drain_kind_ == net::drain_kind::partial)
        (clean ? stats.partial_closed_clean : stats.partial_closed_forced).add();
    params_.endpoint->session_closed();
    if (params_.session_count) params_.session_count->fetch_sub(1, std::memory_order_relaxed);
    if (params_.per_client) params_.per_client->release(params_.client_address.substr(0, params_.client_ip_size));

    const char* closed_by = !close_seen_ ? "none"
                            : close_by_proxy_ ? "proxy"
                            : close_initiator_ == leg_id::downstream ? "client"
                                                                     : "backend";
    const stream& up_stream = stream_from(leg_id::downstream);
    const stream& down_stream = stream_from(leg_id::upstream);
    log::info("session closed", {{"session", id_},
                                 {"client", params_.client_address},
                                 {"upstream", params_.endpoint->upstream_name()},
                                 {"endpoint", params_.endpoint->name()},
                                 {"duration_s", duration},
                                 {"frames_to_backend", up_stream.frames},
                                 {"bytes_to_backend", up_stream.bytes},
                                 {"frames_to_client", down_stream.frames},
                                 {"bytes_to_client", down_stream.bytes},
                                 {"close_code", first_close_code_},
                                 {"closed_by", closed_by},
                                 {"reason", metrics::to_string(reason)}});
}

// --- time ------------------------------------------------------------------------------

// One deadline at a time, the earliest; on_timer() works out which it was and re-arms.
void tunnel::arm_timer() {
    if (finished_) return;
    const auto at = std::min({close_deadline_, next_ping_, pong_deadline_, message_wait_until_});
    if (at == clock::time_point::max() || at >= deadline::at()) return;
    worker_.deadlines().schedule(*this, at);
}

void tunnel::on_deadline(net::deadline& d) {
    const ptr self(static_cast<tunnel*>(&d));
    if (!self->finished_) self->on_timer();
}

void tunnel::on_timer() {
    const auto now = clock::now();
    if (now >= close_deadline_) {
        // The closing handshake did not complete in time: end both legs.
        close_deadline_ = clock::time_point::max();
        if (!(legs_[0].phase == leg_phase::closed && legs_[1].phase == leg_phase::closed) && verdict_ == verdict::none)
            verdict_ = verdict::error;
        close_leg(leg_id::downstream);
        close_leg(leg_id::upstream);
        return;
    }
    if (now >= message_wait_until_) {  // the message in flight did not end in time
        message_wait_until_ = clock::time_point::max();
        pump_injections(leg_id::downstream);
    }
    if (now >= pong_deadline_) {
        pong_deadline_ = clock::time_point::max();
        next_ping_ = clock::time_point::max();
        if (now - last_downstream_activity_ >= params_.keepalive_timeout) {
            verdict_ = verdict::idle;
            queue_close(leg_id::downstream, codec::close_code::going_away, "keepalive timeout");
            queue_close(leg_id::upstream, codec::close_code::going_away, "client keepalive timeout");
            pump_injections(leg_id::downstream);
            pump_injections(leg_id::upstream);
        }
    }
    if (now >= next_ping_) {
        if (close_seen_) {
            next_ping_ = clock::time_point::max();
        } else if (pong_deadline_ != clock::time_point::max()) {
            next_ping_ = pong_deadline_;  // one Ping outstanding at a time: its deadline stands
        } else if (now - last_downstream_activity_ >= params_.ping_interval) {
            leg_of(leg_id::downstream).ping_due = true;
            pump_injections(leg_id::downstream);
            pong_deadline_ = now + params_.keepalive_timeout;
            next_ping_ = now + params_.ping_interval;
        } else {
            next_ping_ = last_downstream_activity_ + params_.ping_interval;
        }
    }
    arm_timer();
}

// --- counting --------------------------------------------------------------------------

void tunnel::publish_counts() {
    metrics::thread_shard& stats = worker_.stats();
    for (leg_id from : {leg_id::downstream, leg_id::upstream}) {
        stream& s = stream_from(from);
        const auto d = static_cast<std::size_t>(direction_from(from));
        if (s.frames != s.frames_published) stats.frames[d].add(s.frames - s.frames_published);
        if (s.bytes != s.bytes_published) stats.bytes[d].add(s.bytes - s.bytes_published);
        s.frames_published = s.frames;
        s.bytes_published = s.bytes;
    }
}

void tunnel::count_drop(leg_id from, metrics::drop_reason why) {
    worker_.stats()
        .frames_dropped[static_cast<std::size_t>(direction_from(from))][static_cast<std::size_t>(why)]
        .add();
}

}  // namespace wsdrain::relay
