//! Compiles `proto/` with protox (pure Rust: no `protoc` on the machine) and
//! tonic-prost-build, and writes the descriptor set that gRPC reflection serves.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "proto";
// The google.rpc files are entries too: no tokend file imports them, yet
// clients resolve the error details they define through reflection.
const ENTRY_FILES: &[&str] = &[
    "tokend/v1/token_service.proto",
    "tokend/v1/problem.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    // `compile` includes every transitive import (google/protobuf, google/rpc),
    // which reflection needs so that clients can resolve every type we send.
    let fds = protox::compile(ENTRY_FILES, [PROTO_ROOT])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("tokend_descriptor.bin"), fds.encode_to_vec())?;

    let mut config = tonic_prost_build::Config::new();
    // `Problem` travels inside `google.protobuf.Any`; its type URL must be the
    // one every gRPC client resolves: `type.googleapis.com/tokend.v1.Problem`.
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The google.rpc detail messages already exist in tonic-types; reusing
        // them keeps one Rust type per proto type.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
