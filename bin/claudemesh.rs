//! The `claudemesh` binary: broker, CLI and MCP server in one.

/// mimalloc instead of glibc malloc: the broker allocates and frees many small buffers per
/// message (frames, records, ids), where glibc's free-list upkeep showed up as ~40% of worker
/// time under load (issue 14).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(claudemesh::cli::main());
}
