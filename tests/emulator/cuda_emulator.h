// A tiny CUDA emulator for the host: enough of the CUDA C model to run strata's kernels
// (shaders/cuda/*.cu) on the CPU and check their indexing, reductions and control flow
// against the CPU reference without a GPU (tests/tests/cuda_emulated.rs).
//
// Each block runs its threads as real threads, so __syncthreads (a block barrier) and
// __shfl_xor_sync (a warp exchange between two warp barriers) behave as on the GPU; blocks
// run one after another, so `__shared__` (a function-local static) is the block's shared
// memory. Only what the kernels use is here; no timing or memory model is emulated.
#pragma once
#define STRATA_HOST 1
#define STRATA_EMULATE 1
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __launch_bounds__(...)
#define __shared__ static

struct BlockSync {
    std::barrier<>* block;
    std::vector<std::barrier<>*> warps;
    float* shfl; // 32 values per warp
};
inline thread_local BlockSync* g_sync = nullptr;

inline void __syncthreads() {
    g_sync->block->arrive_and_wait();
}

inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    float* buf = g_sync->shfl + warp * 32u;
    buf[lane] = v;
    g_sync->warps[warp]->arrive_and_wait();
    const float r = buf[lane ^ (unsigned)lane_mask];
    g_sync->warps[warp]->arrive_and_wait();
    return r;
}

inline float __int_as_float(unsigned i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}

using std::max;
using std::min;

// Runs `body` (one thread's kernel call) for every thread of every block.
template <class F>
void emulate_launch(dim3 grid, unsigned threads, F body) {
    gridDim = grid;
    blockDim = dim3{threads, 1, 1};
    const unsigned warps = (threads + 31u) / 32u;
    std::vector<float> shfl(warps * 32u);
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                std::barrier<> block(threads);
                std::vector<std::barrier<>*> wb;
                std::vector<std::unique_ptr<std::barrier<>>> owned;
                for (unsigned w = 0; w < warps; ++w) {
                    owned.emplace_back(new std::barrier<>(std::min(32u, threads - 32u * w)));
                    wb.push_back(owned.back().get());
                }
                BlockSync sync{&block, wb, shfl.data()};
                std::vector<std::thread> ts;
                ts.reserve(threads);
                for (unsigned t = 0; t < threads; ++t) {
                    ts.emplace_back([&, t] {
                        threadIdx = dim3{t, 0, 0};
                        blockIdx = dim3{x, y, z};
                        g_sync = &sync;
                        body();
                    });
                }
                for (auto& t : ts) t.join();
            }
}
