// The emulator's launcher, compiled after one kernel variant's expanded source and a
// KERNELS list (name -> function) written by the test:
//   driver SCRIPT
// SCRIPT lines: `kernel NAME`, `grid X Y Z`, `block THREADS`, then one line per argument
// in order: `buf PATH` (a device buffer: the file's bytes; written back to PATH.out after
// the launch), `u32 V`, `f32 BITS`.
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

struct Slot {
    void* ptr = nullptr;
    unsigned bits = 0;
};

template <class T>
T slot_as(const Slot& s) {
    if constexpr (std::is_pointer_v<T>) {
        return (T)s.ptr;
    } else {
        static_assert(sizeof(T) == 4, "scalar kernel arguments are 4 bytes");
        T v;
        std::memcpy(&v, &s.bits, 4);
        return v;
    }
}

template <class... A, std::size_t... I>
void call_with(void (*f)(A...), const std::vector<Slot>& s, std::index_sequence<I...>) {
    f(slot_as<A>(s[I])...);
}

template <class... A>
std::function<void(const std::vector<Slot>&)> kernel_of(void (*f)(A...)) {
    return [f](const std::vector<Slot>& s) {
        if (s.size() != sizeof...(A)) {
            std::fprintf(stderr, "kernel takes %zu arguments, got %zu\n", sizeof...(A), s.size());
            std::exit(4);
        }
        call_with(f, s, std::index_sequence_for<A...>{});
    };
}

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    std::map<std::string, std::function<void(const std::vector<Slot>&)>> kernels = {KERNELS};
    std::ifstream in(argv[1]);
    std::string line, name;
    dim3 grid;
    unsigned threads = 0;
    std::vector<Slot> slots;
    std::vector<std::pair<std::string, std::vector<unsigned char>>> bufs;
    bufs.reserve(64);
    while (std::getline(in, line)) {
        std::istringstream l(line);
        std::string what;
        l >> what;
        if (what == "kernel") {
            l >> name;
        } else if (what == "grid") {
            l >> grid.x >> grid.y >> grid.z;
        } else if (what == "block") {
            l >> threads;
        } else if (what == "buf") {
            std::string path;
            l >> path;
            std::ifstream f(path, std::ios::binary);
            std::vector<unsigned char> data((std::istreambuf_iterator<char>(f)), {});
            data.resize(data.size() + 16); // ld32 of a block's last field reads whole words
            bufs.emplace_back(path, std::move(data));
            slots.push_back(Slot{bufs.back().second.data(), 0});
        } else if (what == "u32" || what == "f32") {
            unsigned v;
            l >> v;
            slots.push_back(Slot{nullptr, v});
        }
    }
    auto k = kernels.find(name);
    if (k == kernels.end()) {
        std::fprintf(stderr, "no kernel %s\n", name.c_str());
        return 3;
    }
    emulate_launch(grid, threads, [&] { k->second(slots); });
    for (auto& [path, data] : bufs) {
        std::ofstream out(path + ".out", std::ios::binary);
        out.write((const char*)data.data(), (std::streamsize)(data.size() - 16));
    }
    return 0;
}
