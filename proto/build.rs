//! Compiles the `.proto` files with `protox` (pure Rust, no `protoc` binary needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/tocsin/v1/raft.proto",
        "proto/tocsin/v1/store.proto",
        "proto/tocsin/v1/worker.proto",
        "proto/prometheus/remote.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
