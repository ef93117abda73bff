//! Generates the Rust types of proto/**/*.proto with tonic-prost-build,
//! and for the client API's packages serde impls in the proto3 JSON mapping
//! (pbjson-build; the JSON gateway's codec). protoc comes from
//! protoc-bin-vendored and is set for this build script only (raft's own
//! build needs its own protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("client_api.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .build_client(false)
        .build_server(true)
        .compile_protos(
            &[
                "proto/mvccpb/kv.proto",
                "proto/authpb/auth.proto",
                "proto/etcdserverpb/rpc.proto",
                "proto/etcdserverpb/raft_internal.proto",
                "proto/v3lockpb/v3lock.proto",
                "proto/v3electionpb/v3election.proto",
            ],
            &["proto"],
        )?;
    // grpc-gateway's JSON (etcd's gateway marshals with the .proto field
    // names; either name is accepted on input, unknown fields refused).
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .build(&[
            ".mvccpb",
            ".authpb",
            ".etcdserverpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;
    // Member to member: both sides of the service.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &["proto/peerpb/raftmsg.proto", "proto/peerpb/peer.proto"],
            &["proto"],
        )?;
    Ok(())
}
