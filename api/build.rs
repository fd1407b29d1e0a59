//! Generates the A2A v0.3 gRPC service and its messages (`proto/a2a_v03.proto`):
//! prost types, the tonic server, and their ProtoJSON (pbjson) serde, which
//! the v0.3 HTTP+JSON binding speaks. The v1.0 service comes generated in
//! `a2a-pb`, by the same three tools.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/a2a_v03.proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("a2a_v03.bin");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let includes = [PathBuf::from("proto"), protoc_bin_vendored::include_path()?];
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .out_dir(&out)
        .file_descriptor_set_path(&descriptors)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_with_config(config, &[PathBuf::from("proto/a2a_v03.proto")], &includes)?;
    let mut builder = pbjson_build::Builder::new();
    builder.out_dir(&out).register_descriptors(&std::fs::read(&descriptors)?)?;
    // Unknown fields are ignored, as A2A asks of receivers.
    builder.ignore_unknown_fields().build(&[".a2a.v1"])?;
    Ok(())
}
