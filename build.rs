//! Compiles `proto/` with protox (no system `protoc`), writes the encoded
//! descriptor set for reflection and the gateway, and generates the messages,
//! clients and servers with tonic-prost-build.

use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = proto_files(PROTO_ROOT.as_ref())?;
    // Error details are not imported by any contract but travel in every
    // error's details; reflection must know them so clients can decode them.
    files.push(PathBuf::from("google/rpc/error_details.proto"));
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(&files)?;
    // The encoded set keeps every option, extensions such as
    // `google.api.http` included; `prost_types` would drop those on a
    // decode/encode round trip, so the bytes come from protox directly.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("metrix_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let descriptor_set = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptor_set)?;
    Ok(())
}

/// Every `.proto` file under `metrix/`, sorted so the build is reproducible.
fn proto_files(root: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.join("metrix")];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "proto") {
                found.push(path.strip_prefix(root).map(PathBuf::from).unwrap_or(path));
            }
        }
    }
    found.sort();
    Ok(found)
}
