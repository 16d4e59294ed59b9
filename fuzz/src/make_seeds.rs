//! Write the seed corpora of the fuzz targets into `corpus/<target>/`
//! (run once before fuzzing, see docs/fuzzing.md): small valid inputs of
//! each kind, made with berth's own writers, and hostile tar entries the
//! fuzzer would take long to find (`..`, absolute names, links out,
//! whiteouts), so mutation starts from the interesting places.

use std::path::Path;

use berth_engine::image::digest::Digest;
use berth_engine::image::layout::{DockerManifestEntry, LayoutWriter, TarSink};
use berth_engine::image::manifest::{
    Descriptor, Index, Manifest, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST,
};
use berth_engine::layer::rawtar::{gzip, Entry, RawTar};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn layer(entries: Vec<Entry>) -> Vec<u8> {
    let mut tar = RawTar::new();
    for e in entries {
        tar.add(e);
    }
    tar.finish()
}

/// A one-layer image as (config bytes, manifest bytes, layer tar).
fn image(layer_tar: &[u8]) -> (Vec<u8>, Vec<u8>, Index, Digest) {
    let diff = Digest::of(layer_tar);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": berth_engine::image::manifest::host_architecture(),
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff]},
    }))
    .unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor::new(OCI_CONFIG, Digest::of(&config), config.len() as u64),
        layers: vec![Descriptor::new(
            OCI_LAYER_TAR,
            diff.clone(),
            layer_tar.len() as u64,
        )],
        annotations: None,
    };
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let index = Index::new(vec![Descriptor::new(
        OCI_MANIFEST,
        Digest::of(&bytes),
        bytes.len() as u64,
    )]);
    (config, bytes, index, diff)
}

fn archive(layer_tar: &[u8], docker: bool) -> Vec<u8> {
    let (config, manifest, index, diff) = image(layer_tar);
    let mut w = LayoutWriter::new(TarSink::new(Vec::new()));
    w.blob_bytes(&Digest::of(&config), &config).unwrap();
    w.blob_bytes(&diff, layer_tar).unwrap();
    w.blob_bytes(&Digest::of(&manifest), &manifest).unwrap();
    let sink = if docker {
        let entry = DockerManifestEntry {
            config: LayoutWriter::<TarSink<Vec<u8>>>::blob_path(&Digest::of(&config)),
            repo_tags: vec!["seed:latest".into()],
            layers: vec![LayoutWriter::<TarSink<Vec<u8>>>::blob_path(&diff)],
        };
        w.finish_docker(&index, &[entry]).unwrap()
    } else {
        w.finish_oci(&index).unwrap()
    };
    sink.finish().unwrap()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let small = layer(vec![
        Entry::dir("etc"),
        Entry::file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        Entry::symlink("bin", "usr/bin"),
        Entry::hardlink("etc/passwd2", "etc/passwd"),
    ]);
    let hostile = [
        layer(vec![Entry::file("../escape", b"x")]),
        layer(vec![Entry::file("/abs", b"x")]),
        layer(vec![
            Entry::symlink("up", "../../.."),
            Entry::file("up/escape", b"x"),
        ]),
        layer(vec![
            Entry::symlink("abs", "/"),
            Entry::file("abs/escape", b"x"),
        ]),
        layer(vec![Entry::hardlink("h", "../victim")]),
        layer(vec![
            Entry::dir("d"),
            Entry::file("d/.wh..wh..opq", b""),
            Entry::file(".wh.d", b""),
        ]),
        layer(vec![
            Entry::char_device("dev/null", 1, 3),
            Entry::fifo("fifo"),
        ]),
        layer(vec![
            Entry::file("x", b"data").with_xattr("trusted.overlay.opaque", b"y")
        ]),
    ];
    write(&root.join("unpack"), "small.tar", &small);
    for (i, tar) in hostile.iter().enumerate() {
        write(&root.join("unpack"), &format!("hostile-{i}.tar"), tar);
    }
    write(&root.join("unpack"), "small.tar.gz", &gzip(&small));
    write(&root.join("archive"), "docker.tar", &archive(&small, true));
    write(&root.join("archive"), "oci.tar", &archive(&small, false));
    write(
        &root.join("archive"),
        "docker.tar.gz",
        &gzip(&archive(&small, true)),
    );
    write(
        &root.join("archive"),
        "hostile-layer.tar",
        &archive(&hostile[2], true),
    );
    let (config, manifest, index, _) = image(&small);
    write(&root.join("image_json"), "config.json", &config);
    write(&root.join("image_json"), "manifest.json", &manifest);
    write(
        &root.join("image_json"),
        "index.json",
        &serde_json::to_vec(&index).unwrap(),
    );
    for (i, text) in [
        "busybox",
        "busybox:1.36",
        "localhost:5000/team/app:v1",
        "docker.io/library/debian@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "[::1]:5000/x/y:z",
    ]
    .iter()
    .enumerate()
    {
        write(&root.join("reference"), &format!("ref-{i}"), text.as_bytes());
    }
    let dockerfiles = [
        "FROM busybox AS base\nARG V=1\nENV A=$V B=\"two words\"\nRUN echo $A \\\n  && echo done\nCOPY --chown=1:1 a b /dst/\nWORKDIR /app\nUSER app:app\nENTRYPOINT [\"sh\", \"-c\"]\nCMD echo hi\n",
        "# escape=`\nFROM scratch\nADD https://example.invalid/x /x\nHEALTHCHECK --interval=5s CMD true\nONBUILD RUN make\nSTOPSIGNAL SIGQUIT\nLABEL a=b c=\"d e\"\nEXPOSE 80/tcp 53/udp\nVOLUME [\"/data\"]\nSHELL [\"/bin/bash\", \"-c\"]\n",
        "FROM a AS b\nFROM b\nCOPY --from=b /x /y\nRUN <<EOF\necho heredoc\nEOF\n",
    ];
    for (i, text) in dockerfiles.iter().enumerate() {
        write(
            &root.join("dockerfile"),
            &format!("df-{i}"),
            text.as_bytes(),
        );
    }
    let profile =
        serde_json::to_vec(&berth_engine::security::default_seccomp::default_profile()).unwrap();
    write(&root.join("seccomp_profile"), "default.json", &profile);
    println!("seeds written under {}", root.display());
}
