//! The `claudemesh` binary: broker, CLI and MCP server in one.

fn main() {
    std::process::exit(claudemesh::cli::main());
}
