// SIMT emulator runtime: executes one kernel launch of a host-compiled
// kernel twin (see emu.h) with every CUDA thread as a fiber.
//
// Scheduling: the blocks of the grid run one after another; within a
// block the scheduler resumes the runnable threads in the launch's order
// (forward, reverse, or a seeded shuffle) until each blocks at a barrier or
// a warp collective, or exits; a barrier releases when every participant
// has arrived. In the eager order a released barrier's threads run again
// at once, lowest thread first (one warp races ahead of the others), which
// shows the races that the round-robin orders hide. When no thread is runnable and some have not exited, the
// kernel is stuck: that is reported as an error naming each waiting thread
// (a __syncthreads some threads never reach, a warp mask naming an exited
// lane), never as a hang.
//
// Switching between fibers is a hand-written x86-64 context switch (six
// callee-saved registers and the stack pointer; measured 442 ns per
// swapcontext round trip here, most of it the signal-mask system call,
// against a few ns); other architectures use ucontext.
//
// Errors stop the launch at once: the message is copied out and the launch
// returns 1; fibers that were suspended are abandoned (kernels own no
// resources that need unwinding).

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <algorithm>
#include <string>
#include <vector>

#include "emu.h"

// The end of the executable's static data (GNU ld).
extern "C" char _end;

namespace tk_emu {

// ---- fiber contexts -----------------------------------------------------
#if defined(__x86_64__)
// A suspended context is its stack pointer: tk_emu_switch pushed the
// callee-saved registers (System V AMD64 ABI: rbp, rbx, r12-r15) on the
// suspended stack, then its return address is on top. Kernels do not
// change the floating-point control state (MXCSR, x87 control word), so it
// needs no saving.
struct Context {
    void* sp = nullptr;
};
extern "C" void tk_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .globl tk_emu_switch
    .hidden tk_emu_switch
    .type tk_emu_switch, @function
tk_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size tk_emu_switch, .-tk_emu_switch
)");
inline void switch_context(Context& from, Context& to) { tk_emu_switch(&from.sp, to.sp); }
// Prepares `c` to start `entry` on the stack [base, base + bytes) at the
// next switch into it. `entry` must never return.
inline void make_context(Context& c, char* base, size_t bytes, void (*entry)()) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(base) + bytes) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                          // entry's (absent) return address
    *--sp = reinterpret_cast<void*>(entry);   // popped by tk_emu_switch's ret
    for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12-r15
    c.sp = sp;  // entry starts with rsp = top - 8, as after a call
}
#else
struct Context {
    ucontext_t uc;
};
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_context(Context& c, char* base, size_t bytes, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = base;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

Dim3 g_grid_dim{1, 1, 1}, g_block_dim{1, 1, 1}, g_block_idx{0, 0, 0};

namespace {

enum class Wait { None, Block, Warp, Done };

// One cp.async in flight.
struct Pending {
    unsigned char* dst;
    const unsigned char* src;
    int bytes, src_bytes;
    int group;  // index of the group it belongs to (== committed while open)
};

struct Fiber {
    Context ctx;
    Dim3 tid;
    int linear = 0;
    Wait wait = Wait::None;
    unsigned mask = 0;       // members of the warp collective it waits in
    const char* what = "";   // the collective's name
    uint64_t value = 0;      // published value of an exchange
    bool pred = false;       // published predicate of a vote
    const void* buf = nullptr;  // published buffer of a gather
    std::vector<Pending> pending;  // cp.async copies not yet landed
    int committed = 0;             // groups committed so far
};

typedef void (*Trampoline)(const void* kernel, const void* params);

struct Launch {
    const char* name = "";
    Trampoline call = nullptr;
    const void* kernel = nullptr;
    const void* params = nullptr;
    std::vector<Fiber> fibers;
    std::vector<int> order;
    std::vector<char> stacks;
    size_t stack_bytes = 0;
    Context scheduler;
    std::vector<unsigned> exited;  // per warp: lanes that have exited
    // Dynamic shared memory (the launch's shared_mem_bytes) with a poison
    // fence on each side; `smem` is its first byte.
    std::vector<unsigned char> smem_buf;
    unsigned char* smem = nullptr;
    size_t smem_bytes = 0;
    bool eager = false;
    Fiber* cur = nullptr;
    bool failed = false;
    std::string error;
};

Launch* g = nullptr;

// ---- race detector ------------------------------------------------------
// The kernel twins are compiled with -fsanitize=thread, which makes the
// compiler call __tsan_readN / __tsan_writeN before every memory access;
// this runtime (not instrumented, and not linked with libtsan) implements
// those hooks itself. With race checking on, every access outside the
// fibers' stacks (i.e. to __shared__ variables and device memory) is
// recorded per 2-byte granule (the narrowest element any kernel stores:
// f16 / bf16; two threads writing the two bytes of one granule would be
// reported although they do not overlap); an access that conflicts (one of them a
// write) with an access of another thread of the block since the last
// __syncthreads, without a warp collective between them when both threads
// are in one warp, is a data race and stops the launch with an error
// naming the kernel, the location and both threads. Races between blocks
// are not seen (blocks run one after another).
struct Granule {
    int writer = -1;            // last writing thread, in w_epoch
    uint32_t w_epoch = 0;
    uint32_t w_wsync = 0;       // the writer's warp-sync count at the write
    const void* w_pc = nullptr;
    int reader = -1;            // a reading thread in r_epoch
    bool other_readers = false; // another thread read too, in r_epoch
    uint32_t r_warps = 0;       // warps that read in r_epoch (bit per warp)
    uint32_t r_epoch = 0;
    uint32_t r_wsync = 0;       // the readers' warp-sync count at the last read
};
// Live device allocations of the launching emulator, sorted by address, and
// the poison fence around each: an access inside a fence is out of bounds.
struct Alloc {
    uintptr_t ptr;
    size_t bytes;
};
std::vector<Alloc> g_allocs;
size_t g_fence = 0;
bool g_race_on = false;
uint32_t g_epoch = 1;                      // block barrier epoch
std::vector<uint32_t> g_warp_sync;         // per warp: released warp collectives
// The granules of everything else (device memory, static __shared__): an
// open-addressing hash table (linear probing) whose slots carry the
// generation of the block that claimed them, so that clearing it per block
// is one increment, and claiming a slot allocates nothing (a node-based map
// spent a third of a GEMM's emulation in malloc / free).
class ShadowTable {
public:
    Granule& operator[](uintptr_t key) {
        if ((used_ + 1) * 2 > slots_.size()) grow();
        const size_t mask = slots_.size() - 1;
        for (size_t i = hash(key) & mask;; i = (i + 1) & mask) {
            Slot& s = slots_[i];
            if (s.gen != gen_) {
                s.gen = gen_;
                s.key = key;
                s.g = Granule{};
                ++used_;
                return s.g;
            }
            if (s.key == key) return s.g;
        }
    }
    // Forgets every granule (the next block starts clean).
    void clear() {
        used_ = 0;
        if (++gen_ == 0) {  // wrapped: no slot may look current
            for (Slot& s : slots_) s.gen = 0;
            gen_ = 1;
        }
    }
    // Forgets everything and frees the slots (end of a launch).
    void release() {
        std::vector<Slot>().swap(slots_);
        used_ = 0;
        gen_ = 1;
    }

private:
    struct Slot {
        uintptr_t key = 0;
        uint32_t gen = 0;
        Granule g;
    };
    static size_t hash(uintptr_t k) { return size_t((k * 0x9E3779B97F4A7C15ull) >> 17); }
    void grow() {
        std::vector<Slot> old;
        old.swap(slots_);
        slots_.assign(old.empty() ? size_t(1) << 16 : old.size() * 2, Slot{});
        const size_t mask = slots_.size() - 1;
        for (const Slot& o : old) {
            if (o.gen != gen_) continue;
            size_t i = hash(o.key) & mask;
            while (slots_[i].gen == gen_) i = (i + 1) & mask;
            slots_[i] = o;
        }
    }
    std::vector<Slot> slots_;
    size_t used_ = 0;
    uint32_t gen_ = 1;
};
ShadowTable g_shadow;
// The granules of the launch's dynamic shared memory, by offset: a flat
// array (the tensor-core kernels touch it on every step; a hash lookup per
// granule made the detector the emulator's largest cost). Entries need no
// clearing between blocks: a conflict needs the current epoch, and epochs
// only grow.
std::vector<Granule> g_smem_shadow;
uintptr_t g_smem_lo = 0, g_smem_hi = 0;

[[noreturn]] void fail(const std::string& msg);
std::string where_thread(int linear);

std::string where_thread(int linear) {
    const Fiber& f = g->fibers[linear];
    char buf[96];
    snprintf(buf, sizeof buf, "thread (%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z);
    return buf;
}

std::string where(const Fiber& f) {
    char buf[160];
    snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u) (warp %d lane %d)",
             g_block_idx.x, g_block_idx.y, g_block_idx.z, f.tid.x, f.tid.y, f.tid.z,
             f.linear / 32, f.linear % 32);
    return buf;
}

// Records the first error and returns to the scheduler for good.
[[noreturn]] void fail(const std::string& msg) {
    if (!g->failed) {
        g->failed = true;
        g->error = std::string("kernel ") + g->name + ": " + msg;
    }
    Fiber* f = g->cur;
    f->wait = Wait::Done;
    g->exited[f->linear / 32] |= 1u << (f->linear % 32);
    switch_context(f->ctx, g->scheduler);
    abort();  // never resumed
}

void yield() {
    Fiber* f = g->cur;
    switch_context(f->ctx, g->scheduler);
    if (g->failed) fail(g->error);
}

void fiber_main() {
    Fiber* f = g->cur;
    g->call(g->kernel, g->params);
    f->wait = Wait::Done;
    g->exited[f->linear / 32] |= 1u << (f->linear % 32);
    switch_context(f->ctx, g->scheduler);
    abort();  // never resumed
}

Fiber& lane_fiber(const Fiber& f, int lane) {
    return g->fibers[(f.linear & ~31) + lane];
}

// Lanes of the calling thread's warp that exist in this block.
unsigned warp_present(const Fiber& f) {
    const int n = static_cast<int>(g->fibers.size()) - (f.linear & ~31);
    return n >= 32 ? 0xffffffffu : ((1u << n) - 1u);
}

// Releases the waiters of a barrier whose participants have all arrived.
// Returns true if anything was released.
bool release_barriers() {
    bool released = false;
    // Block barrier: every thread waits at it, or some have exited (error at
    // deadlock time, so that the message names all of them).
    bool all_block = true;
    for (const Fiber& f : g->fibers)
        if (f.wait != Wait::Block) all_block = false;
    if (all_block) {
        for (Fiber& f : g->fibers) f.wait = Wait::None;
        ++g_epoch;
        return true;
    }
    // Warp collectives: every lane of the mask waits with the same mask.
    for (Fiber& f : g->fibers) {
        if (f.wait != Wait::Warp) continue;
        bool ready = true;
        for (int l = 0; l < 32 && ready; ++l) {
            if (!(f.mask >> l & 1u)) continue;
            const Fiber& o = lane_fiber(f, l);
            ready = o.wait == Wait::Warp && o.mask == f.mask;
        }
        if (!ready) continue;
        for (int l = 0; l < 32; ++l)
            if (f.mask >> l & 1u) lane_fiber(f, l).wait = Wait::None;
        if (!g_warp_sync.empty()) ++g_warp_sync[f.linear / 32];
        released = true;
    }
    return released;
}

std::string describe_stuck() {
    std::string s = "deadlock: no thread can proceed:";
    int at_barrier = 0, exited = 0;
    const Fiber *first_barrier = nullptr, *first_exited = nullptr;
    for (const Fiber& f : g->fibers) {
        if (f.wait == Wait::Block) {
            if (!first_barrier) first_barrier = &f;
            ++at_barrier;
        } else if (f.wait == Wait::Done) {
            if (!first_exited) first_exited = &f;
            ++exited;
        }
    }
    char buf[256];
    if (at_barrier > 0) {
        snprintf(buf, sizeof buf, " %d of %zu threads wait at __syncthreads (first: %s)",
                 at_barrier, g->fibers.size(), where(*first_barrier).c_str());
        s += buf;
        if (exited > 0) {
            snprintf(buf, sizeof buf, " while %d have exited (first: %s): a barrier some threads never reach;",
                     exited, where(*first_exited).c_str());
            s += buf;
        } else {
            s += ";";
        }
    }
    // Each warp collective that cannot complete, once per warp.
    int last_warp = -1;
    for (const Fiber& f : g->fibers) {
        if (f.wait != Wait::Warp || f.linear / 32 == last_warp) continue;
        last_warp = f.linear / 32;
        unsigned gone = 0, elsewhere = 0;
        for (int l = 0; l < 32; ++l) {
            if (!(f.mask >> l & 1u)) continue;
            const Fiber& o = lane_fiber(f, l);
            if (o.wait == Wait::Done) gone |= 1u << l;
            else if (o.wait != Wait::Warp || o.mask != f.mask) elsewhere |= 1u << l;
        }
        snprintf(buf, sizeof buf, " %s waits in %s with mask 0x%08x", where(f).c_str(), f.what,
                 f.mask);
        s += buf;
        if (gone) {
            snprintf(buf, sizeof buf, ", whose lanes 0x%08x have exited", gone);
            s += buf;
        }
        if (elsewhere) {
            snprintf(buf, sizeof buf, ", whose lanes 0x%08x wait elsewhere", elsewhere);
            s += buf;
        }
        s += ";";
    }
    return s;
}

// Runs the block g_block_idx to completion (or to an error).
void run_block() {
    g_shadow.clear();
    ++g_epoch;
    g_warp_sync.assign((g->fibers.size() + 31) / 32, 0);
    g->exited.assign((g->fibers.size() + 31) / 32, 0u);
    for (size_t i = 0; i < g->fibers.size(); ++i) {
        Fiber& f = g->fibers[i];
        f.wait = Wait::None;
        f.pending.clear();
        f.committed = 0;
        make_context(f.ctx, g->stacks.data() + i * g->stack_bytes, g->stack_bytes, fiber_main);
    }
    // Fresh dynamic shared memory reads as poison (NaN) until written.
    if (g->smem_bytes) memset(g->smem, 0xFF, g->smem_bytes);
    if (g->eager) {
        for (;;) {
            Fiber* next = nullptr;
            for (int idx : g->order)
                if (g->fibers[idx].wait == Wait::None) {
                    next = &g->fibers[idx];
                    break;
                }
            if (next) {
                g->cur = next;
                switch_context(g->scheduler, next->ctx);
                if (g->failed) return;
                release_barriers();
                continue;
            }
            bool all_done = true;
            for (const Fiber& f : g->fibers)
                if (f.wait != Wait::Done) all_done = false;
            if (all_done) return;
            if (release_barriers()) continue;
            g->failed = true;
            g->error = std::string("kernel ") + g->name + ": " + describe_stuck();
            return;
        }
    }
    for (;;) {
        bool progress = false;
        for (int idx : g->order) {
            Fiber& f = g->fibers[idx];
            if (f.wait != Wait::None) continue;
            g->cur = &f;
            switch_context(g->scheduler, f.ctx);
            progress = true;
            if (g->failed) return;
        }
        bool all_done = true;
        for (const Fiber& f : g->fibers)
            if (f.wait != Wait::Done) all_done = false;
        if (all_done) return;
        if (release_barriers()) continue;
        if (!progress) {
            g->failed = true;
            g->error = std::string("kernel ") + g->name + ": " + describe_stuck();
            return;
        }
    }
}

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Enters a warp collective over `mask`: checks it, publishes, waits.
void warp_wait(unsigned mask, const char* what) {
    Fiber* f = g->cur;
    const int lane = f->linear % 32;
    if (!(mask >> lane & 1u)) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s with mask 0x%08x called by lane %d, which is not in it",
                 what, mask, lane);
        fail(where(*f) + ": " + buf);
    }
    const unsigned absent = mask & ~warp_present(*f);
    if (absent) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s mask 0x%08x names lanes 0x%08x that the block does not have",
                 what, mask, absent);
        fail(where(*f) + ": " + buf);
    }
    if (const unsigned gone = mask & g->exited[f->linear / 32]) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s mask 0x%08x names lane %d, which has exited", what, mask,
                 __builtin_ctz(gone));
        fail(where(*f) + ": " + buf);
    }
    f->wait = Wait::Warp;
    f->mask = mask;
    f->what = what;
    yield();
}

// Fails when [a, a + bytes) touches the fence of a device allocation.
void check_bounds(uintptr_t a, size_t bytes, bool write, const void* pc) {
    if (g_allocs.empty()) return;
    // The first allocation starting after a's fence could begin.
    size_t lo = 0, hi = g_allocs.size();
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (g_allocs[mid].ptr + g_allocs[mid].bytes + g_fence <= a) lo = mid + 1;
        else hi = mid;
    }
    for (size_t i = lo; i < g_allocs.size() && g_allocs[i].ptr - g_fence < a + bytes; ++i) {
        const Alloc& al = g_allocs[i];
        const uintptr_t end = al.ptr + al.bytes;
        if (a + bytes <= al.ptr - g_fence || a >= end + g_fence) continue;
        if (a >= al.ptr && a + bytes <= end) return;  // inside
        const char* kind = g && al.ptr == reinterpret_cast<uintptr_t>(g->smem)
                               ? "dynamic shared memory"
                               : "allocation";
        char buf[320];
        if (a + bytes > end)
            snprintf(buf, sizeof buf,
                     "out-of-bounds %s of %zu bytes at %p (pc %p), %zu bytes past the end of "
                     "the %zu-byte %s at %p",
                     write ? "write" : "read", bytes, reinterpret_cast<void*>(a), pc,
                     size_t(a + bytes - end), al.bytes, kind, reinterpret_cast<void*>(al.ptr));
        else
            snprintf(buf, sizeof buf,
                     "out-of-bounds %s of %zu bytes at %p (pc %p), %zu bytes before the start "
                     "of the %zu-byte %s at %p",
                     write ? "write" : "read", bytes, reinterpret_cast<void*>(a), pc,
                     size_t(al.ptr - a), al.bytes, kind, reinterpret_cast<void*>(al.ptr));
        fail(where(*g->cur) + ": " + buf);
    }
}

// Records an access of `bytes` bytes at `addr` by the running thread.
void record_access(const void* addr, size_t bytes, bool write, const void* pc) {
    if (!g || !g->cur || bytes == 0) return;
    const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
    const uintptr_t lo = reinterpret_cast<uintptr_t>(g->stacks.data());
    if (a >= lo && a < lo + g->stacks.size()) return;  // a thread's own stack
    check_bounds(a, bytes, write, pc);
    if (!g_race_on) return;
    const Fiber& f = *g->cur;
    const int me = f.linear, warp = me / 32;
    const uint32_t wsync = g_warp_sync[warp];
    for (uintptr_t gr = a / 2; gr <= (a + bytes - 1) / 2; ++gr) {
        Granule& s = (gr * 2 >= g_smem_lo && gr * 2 < g_smem_hi)
                         ? g_smem_shadow[(gr * 2 - g_smem_lo) / 2]
                         : g_shadow[gr];
        const char* conflict = nullptr;
        int other = -1;
        const void* other_pc = nullptr;
        // Against the last write of another thread in this epoch.
        if (s.w_epoch == g_epoch && s.writer >= 0 && s.writer != me &&
            (s.writer / 32 != warp || s.w_wsync == wsync)) {
            conflict = write ? "writes" : "reads";
            other = s.writer;
            other_pc = s.w_pc;
        }
        // A write against reads of other threads in this epoch.
        if (!conflict && write && s.r_epoch == g_epoch &&
            ((s.r_warps & ~(1u << warp)) != 0 ||
             ((s.other_readers || s.reader != me) && s.r_wsync == wsync))) {
            conflict = "writes";
            other = s.reader != me ? s.reader : -1;
        }
        if (conflict) {
            // Statics (the twins' __shared__ variables) end at the linker's
            // _end; device memory is heap.
            const bool is_static = a < reinterpret_cast<uintptr_t>(&_end);
            const bool is_dynamic = gr * 2 >= g_smem_lo && gr * 2 < g_smem_hi;
            const char* space = is_dynamic ? "dynamic __shared__ memory"
                                : is_static ? "__shared__ memory"
                                            : "device memory";
            char buf[384];
            if (other_pc) {
                snprintf(buf, sizeof buf,
                         "data race on %s at %p: %s %s it (pc %p) after %s wrote it (pc %p) "
                         "with no __syncthreads (or warp collective) between",
                         space,
                         reinterpret_cast<void*>(gr * 2), where(f).c_str(), conflict, pc,
                         where_thread(other).c_str(), other_pc);
            } else {
                snprintf(buf, sizeof buf,
                         "data race on %s at %p: %s writes it (pc %p) after %s read it "
                         "with no __syncthreads (or warp collective) between",
                         space,
                         reinterpret_cast<void*>(gr * 2), where(f).c_str(), pc,
                         other >= 0 ? where_thread(other).c_str() : "other threads");
            }
            fail(std::string(buf));
        }
        if (write) {
            s.writer = me;
            s.w_epoch = g_epoch;
            s.w_wsync = wsync;
            s.w_pc = pc;
        } else {
            if (s.r_epoch != g_epoch) {
                s.r_epoch = g_epoch;
                s.reader = me;
                s.other_readers = false;
                s.r_warps = 0;
            } else if (s.reader != me) {
                s.other_readers = true;
            }
            s.r_warps |= 1u << (warp & 31);
            s.r_wsync = wsync;
        }
    }
}

}  // namespace

const Dim3& thread_idx() { return g->cur->tid; }

void* dynamic_smem() { return g->smem; }

int lane_id() { return g->cur->linear % 32; }

void syncthreads() {
    g->cur->wait = Wait::Block;
    yield();
}

void syncwarp(unsigned mask) {
    warp_wait(mask, "__syncwarp");
    // A second rendezvous is not needed: __syncwarp publishes nothing.
}

uint64_t exchange(unsigned mask, uint64_t value, int src, const char* what) {
    Fiber* f = g->cur;
    if (src < 0 || src > 31 || !(mask >> src & 1u)) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s with mask 0x%08x reads lane %d, which is not in it", what,
                 mask, src);
        fail(where(*f) + ": " + buf);
    }
    f->value = value;
    warp_wait(mask, what);  // every lane has published
    const uint64_t got = lane_fiber(*f, src).value;
    warp_wait(mask, what);  // every lane has read before anyone publishes again
    return got;
}

// Every lane of the (full) warp publishes `mine` (valid on its stack until
// the lane calls warp_release) and waits until all have; then each lane may
// read the others' with peer().
static void warp_publish(const void* mine, const char* what) {
    g->cur->buf = mine;
    warp_wait(0xffffffffu, what);
}
template <typename T>
static const T& peer(int lane) {
    return *static_cast<const T*>(lane_fiber(*g->cur, lane).buf);
}
// Every lane has read what it needed: the published buffers may go.
static void warp_release(const char* what) { warp_wait(0xffffffffu, what); }

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
    Fiber* f = g->cur;
    if (src_bytes < 0 || src_bytes > bytes) {
        char buf[96];
        snprintf(buf, sizeof buf, "cp.async with src-size %d of %d bytes", src_bytes, bytes);
        fail(where(*f) + ": " + buf);
    }
    // The copy writes shared memory when issued (its value is undefined
    // until the wait) and reads global memory: both are checked now.
    record_access(src, src_bytes > 0 ? size_t(src_bytes) : 0, false, __builtin_return_address(0));
    record_access(dst, size_t(bytes), true, __builtin_return_address(0));
    memset(dst, 0xFF, bytes);
    f->pending.push_back(Pending{static_cast<unsigned char*>(dst),
                                 static_cast<const unsigned char*>(src), bytes, src_bytes,
                                 f->committed});
}

void cp_async_commit() { ++g->cur->committed; }

void cp_async_wait(int n) {
    Fiber* f = g->cur;
    const int limit = n < 0 ? 1 << 30 : f->committed - n;  // groups below land
    // Compacted in place (the vector keeps its capacity: no allocation per wait).
    size_t kept = 0;
    for (const Pending& p : f->pending) {
        if (p.group < limit) {
            memcpy(p.dst, p.src, p.src_bytes);
            memset(p.dst + p.src_bytes, 0, p.bytes - p.src_bytes);
        } else {
            f->pending[kept++] = p;
        }
    }
    f->pending.resize(kept);
}

void ldmatrix(uint32_t* r, int count, bool trans, const void* smem) {
    const char* what = trans ? "ldmatrix.trans" : "ldmatrix";
    const int l = g->cur->linear % 32;
    // Lanes 0 .. 8*count-1 supply one 16-byte row each (the others' addresses
    // are ignored): that row is this lane's read of shared memory.
    if (l < 8 * count) {
        const uintptr_t a = reinterpret_cast<uintptr_t>(smem);
        if (a % 16 != 0) {
            char buf[96];
            snprintf(buf, sizeof buf, "%s row address %p is not 16-byte aligned", what, smem);
            fail(where(*g->cur) + ": " + buf);
        }
        record_access(smem, 16, false, __builtin_return_address(0));
    }
    warp_publish(&smem, what);
    for (int i = 0; i < count; ++i) {
        uint16_t e[2];
        for (int j = 0; j < 2; ++j) {
            // Lane 8i + row supplied the address of row `row` of matrix i.
            const int row = trans ? 2 * (l % 4) + j : l / 4;
            const int col = trans ? l / 4 : 2 * (l % 4) + j;
            memcpy(&e[j], static_cast<const char*>(peer<const void*>(8 * i + row)) + 2 * col, 2);
        }
        r[i] = uint32_t(e[0]) | (uint32_t(e[1]) << 16);
    }
    warp_release(what);
}

// f16 -> f32 of every bit pattern (exact), built once: the host
// __half2float is a bit-by-bit conversion, a hot spot of the mma twin.
static const float* f16_table() {
    static const std::vector<float> table = [] {
        std::vector<float> t(65536);
        for (uint32_t b = 0; b < 65536; ++b) {
            const uint16_t h = static_cast<uint16_t>(b);
            __half v;
            memcpy(&v, &h, 2);
            t[b] = __half2float(v);
        }
        return t;
    }();
    return table.data();
}

static inline float half_bits_to_f32(uint16_t b, bool bf16) {
    if (bf16) {
        // bf16 is the upper half of an f32 (exact).
        const uint32_t u = uint32_t(b) << 16;
        float v;
        memcpy(&v, &u, 4);
        return v;
    }
    return f16_table()[b];
}

// Element `h` (0: low half, 1: high half) of a .b32 register of two 16-bit values.
static inline float half_of(uint32_t reg, int h, bool bf16) {
    return half_bits_to_f32(uint16_t(h ? reg >> 16 : reg & 0xFFFFu), bf16);
}

void mma_m16n8k16(float* d, const uint32_t* a, const uint32_t* b, const float* c, bool bf16) {
    struct Frag {
        uint32_t a[4], b[2];
    } mine;
    memcpy(mine.a, a, sizeof mine.a);
    memcpy(mine.b, b, sizeof mine.b);
    const char* what = "mma.sync.m16n8k16";
    warp_publish(&mine, what);
    // This lane's D elements are rows g, g + 8 and columns 2t, 2t + 1 (PTX
    // ISA, "Matrix Fragments for mma.m16n8k16 with floating point type").
    // Row g of A (k 0..15) is spread over lanes 4g .. 4g + 3 (a[0]: k 2t',
    // 2t'+1; a[2]: k 2t'+8, 2t'+9; a[1], a[3] the same for row g + 8);
    // column n of B over lanes 4n .. 4n + 3 (b[0]: k 2t', 2t'+1; b[1]: k
    // 2t'+8, 2t'+9). C is this lane's own c.
    const int lane = g->cur->linear % 32, gq = lane / 4, t = lane % 4;
    float A[2][16], B[2][16];
    for (int tt = 0; tt < 4; ++tt) {
        const Frag& fa = peer<Frag>(4 * gq + tt);
        for (int h = 0; h < 2; ++h) {
            A[0][2 * tt + h] = half_of(fa.a[0], h, bf16);
            A[1][2 * tt + h] = half_of(fa.a[1], h, bf16);
            A[0][2 * tt + 8 + h] = half_of(fa.a[2], h, bf16);
            A[1][2 * tt + 8 + h] = half_of(fa.a[3], h, bf16);
        }
        for (int j = 0; j < 2; ++j) {
            const Frag& fb = peer<Frag>(4 * (2 * t + j) + tt);
            for (int h = 0; h < 2; ++h) {
                B[j][2 * tt + h] = half_of(fb.b[0], h, bf16);
                B[j][2 * tt + 8 + h] = half_of(fb.b[1], h, bf16);
            }
        }
    }
    // Accumulated in f32 in k order, onto C (the tensor core's own order
    // and internal precision are not specified; a GPU run is the final word
    // on them). c is read before d is written: d may alias c.
    float out[4];
    for (int i = 0; i < 4; ++i) {
        float acc = c[i];
        for (int k = 0; k < 16; ++k) acc += A[i / 2][k] * B[i % 2][k];
        out[i] = acc;
    }
    warp_release(what);
    memcpy(d, out, sizeof out);
}

unsigned ballot(unsigned mask, bool pred, const char* what) {
    Fiber* f = g->cur;
    f->pred = pred;
    warp_wait(mask, what);
    unsigned b = 0;
    for (int l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && lane_fiber(*f, l).pred) b |= 1u << l;
    warp_wait(mask, what);
    return b;
}

}  // namespace tk_emu

// Order of the threads within a block: 0 forward, 1 reverse, 2 a shuffle
// seeded by `seed` (a new permutation per block), 3 eager (forward order,
// released threads run again at once).
extern "C" int tk_emu_launch(const char* name, void (*call)(const void*, const void*),
                             const void* kernel, const void* params, const uint32_t grid[3],
                             const uint32_t block[3], uint32_t shared_bytes, int order,
                             uint64_t seed, int race_check,
                             const uint64_t* alloc_ptrs, const uint64_t* alloc_bytes,
                             size_t n_allocs, size_t fence, char* error, size_t error_len) {
    using namespace tk_emu;
    Launch launch;
    launch.name = name;
    launch.call = call;
    launch.kernel = kernel;
    launch.params = params;
    launch.eager = order == 3;
    const size_t threads = size_t(block[0]) * block[1] * block[2];
    if (threads == 0 || threads > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0) {
        snprintf(error, error_len, "kernel %s: invalid launch: grid (%u,%u,%u) block (%u,%u,%u)",
                 name, grid[0], grid[1], grid[2], block[0], block[1], block[2]);
        return 1;
    }
    // sm_90's per-block maximum of dynamic shared memory (227 KiB; sm_80: 163 KiB).
    if (shared_bytes > 232448u) {
        snprintf(error, error_len,
                 "kernel %s: invalid launch: %u bytes of dynamic shared memory exceed the "
                 "232448-byte per-block limit",
                 name, shared_bytes);
        return 1;
    }
    launch.fibers.resize(threads);
    for (size_t i = 0; i < threads; ++i) {
        Fiber& f = launch.fibers[i];
        f.linear = static_cast<int>(i);
        f.tid = Dim3{unsigned(i % block[0]), unsigned(i / block[0] % block[1]),
                     unsigned(i / (size_t(block[0]) * block[1]))};
    }
    launch.stack_bytes = 64 * 1024;
    launch.stacks.resize(threads * launch.stack_bytes);
    launch.order.resize(threads);
    g_grid_dim = Dim3{grid[0], grid[1], grid[2]};
    g_block_dim = Dim3{block[0], block[1], block[2]};
    g = &launch;
    g_race_on = race_check != 0;
    g_fence = fence;
    g_allocs.clear();
    for (size_t i = 0; i < n_allocs; ++i)
        g_allocs.push_back(Alloc{uintptr_t(alloc_ptrs[i]), size_t(alloc_bytes[i])});
    // Dynamic shared memory: fenced like a device allocation, so an access
    // past either end is caught at the access; 128-byte aligned.
    launch.smem_bytes = shared_bytes;
    launch.smem_buf.assign(shared_bytes + 2 * fence + 128, 0xFF);
    {
        const uintptr_t base = reinterpret_cast<uintptr_t>(launch.smem_buf.data()) + fence;
        launch.smem = reinterpret_cast<unsigned char*>((base + 127) & ~uintptr_t(127));
    }
    g_allocs.push_back(Alloc{reinterpret_cast<uintptr_t>(launch.smem), shared_bytes});
    g_smem_lo = reinterpret_cast<uintptr_t>(launch.smem) & ~uintptr_t(1);
    g_smem_hi = reinterpret_cast<uintptr_t>(launch.smem) + shared_bytes;
    g_smem_shadow.assign((g_smem_hi - g_smem_lo + 1) / 2, Granule{});
    std::sort(g_allocs.begin(), g_allocs.end(),
              [](const Alloc& x, const Alloc& y) { return x.ptr < y.ptr; });
    uint64_t rng = seed;
    for (uint32_t z = 0; z < grid[2] && !launch.failed; ++z)
        for (uint32_t y = 0; y < grid[1] && !launch.failed; ++y)
            for (uint32_t x = 0; x < grid[0] && !launch.failed; ++x) {
                for (size_t i = 0; i < threads; ++i)
                    launch.order[i] = static_cast<int>(order == 1 ? threads - 1 - i : i);
                if (order == 2)
                    for (size_t i = threads - 1; i > 0; --i) {
                        const size_t j = splitmix(rng) % (i + 1);
                        const int t = launch.order[i];
                        launch.order[i] = launch.order[j];
                        launch.order[j] = t;
                    }
                g_block_idx = Dim3{x, y, z};
                run_block();
            }
    g = nullptr;
    g_race_on = false;
    g_allocs.clear();
    g_shadow.release();
    g_smem_shadow.clear();
    g_smem_lo = g_smem_hi = 0;
    if (launch.failed) {
        snprintf(error, error_len, "%s", launch.error.c_str());
        return 1;
    }
    return 0;
}

// ---- ThreadSanitizer's instrumentation hooks, implemented here ------------
// (see the race detector above). Only the kernel twins are instrumented.
extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
#define TK_TSAN_ACCESS(N)                                                                      \
    void __tsan_read##N(void* a) { tk_emu::record_access(a, N, false, __builtin_return_address(0)); } \
    void __tsan_write##N(void* a) { tk_emu::record_access(a, N, true, __builtin_return_address(0)); } \
    void __tsan_unaligned_read##N(void* a) {                                                   \
        tk_emu::record_access(a, N, false, __builtin_return_address(0));                      \
    }                                                                                          \
    void __tsan_unaligned_write##N(void* a) {                                                  \
        tk_emu::record_access(a, N, true, __builtin_return_address(0));                       \
    }
TK_TSAN_ACCESS(1)
TK_TSAN_ACCESS(2)
TK_TSAN_ACCESS(4)
TK_TSAN_ACCESS(8)
TK_TSAN_ACCESS(16)
#undef TK_TSAN_ACCESS
void __tsan_read_range(void* a, unsigned long n) {
    if (n) tk_emu::record_access(a, n, false, __builtin_return_address(0));
}
void __tsan_write_range(void* a, unsigned long n) {
    if (n) tk_emu::record_access(a, n, true, __builtin_return_address(0));
}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
// Function-local statics' guards (the twins' __shared__ arrays of class
// type): plain loads and stores, one thread at a time.
unsigned char __tsan_atomic8_load(const volatile unsigned char* a, int) { return *a; }
void __tsan_atomic8_store(volatile unsigned char* a, unsigned char v, int) { *a = v; }
int __tsan_atomic32_load(const volatile int* a, int) { return *a; }
void __tsan_atomic32_store(volatile int* a, int v, int) { *a = v; }
}
