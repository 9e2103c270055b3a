//! Compiles `proto/` with protox (pure Rust: no `protoc` on the machine) and
//! tonic-prost-build, and writes the descriptor set that gRPC reflection and
//! the REST route table read.

use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";
// The google.rpc files are entries too: no tokend file imports them, yet
// clients resolve the error details they define through reflection. The
// google.api files come in as imports of token_service.proto.
const ENTRY_FILES: &[&str] = &[
    "tokend/v1/token_service.proto",
    "tokend/v1/problem.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    // Every transitive import is included (google/protobuf, google/api,
    // google/rpc): reflection needs them so that clients can resolve every
    // type we send.
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(ENTRY_FILES)?;

    // `encode_file_descriptor_set` keeps extension options, which
    // `prost_types` would drop: the `google.api.http` rule of each RPC is one,
    // and the REST route table is read from it at start-up.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tokend_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    let mut config = tonic_prost_build::Config::new();
    // `Problem` travels inside `google.protobuf.Any`; its type URL must be the
    // one every gRPC client resolves: `type.googleapis.com/tokend.v1.Problem`.
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");

    // google.api (`HttpRule`) has no crate in the dependency graph, so its
    // Rust types are generated here, into `google.api.rs`, for the REST route
    // table to read the rules typed.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The google.rpc detail messages already exist in tonic-types; reusing
        // them keeps one Rust type per proto type.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .compile_fds_with_config(compiler.file_descriptor_set(), config)?;
    Ok(())
}
