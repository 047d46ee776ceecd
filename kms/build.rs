//! Generates the gRPC code from `proto/kms.proto` and `proto/admin.proto` with a pure-Rust protobuf
//! compiler (protox), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/kms.proto");
    println!("cargo:rerun-if-changed=proto/admin.proto");
    let fds = protox::compile(["proto/kms.proto", "proto/admin.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
