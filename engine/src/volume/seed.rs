//! Seeding a new volume with what the image has at the mount point, as
//! docker does: `-v dbdata:/var/lib/postgresql/data` starts with the image's
//! files there (and their owners and modes) the first time.
//!
//! Mechanism: everything by file descriptor. The source directory is opened
//! beneath the container's rootfs with `openat2(RESOLVE_IN_ROOT)` (see
//! `berth_runtime::beneath`), so a symlink in the image — even one pointing
//! at `/etc` or `../../` — is resolved inside the image, never on the host.
//! Below it every entry is visited with `fstatat(AT_SYMLINK_NOFOLLOW)` and
//! opened with `O_NOFOLLOW`; symlinks are copied as symlinks (`readlinkat`,
//! `symlinkat`), never followed; new files are made with `O_EXCL` in the
//! volume's directory fd; ownership and modes follow with `fchown`/`fchmod`.
//! Device nodes and sockets are skipped (a volume is for data).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use berth_runtime::beneath;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Copy the image's directory `target` (a path inside `rootfs`) into the
/// empty directory `volume_dir`. Nothing to copy (the image has no such
/// directory) is fine. Returns how many entries were copied.
pub fn seed_from_image(rootfs: &Path, target: &str, volume_dir: &Path) -> io::Result<u64> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let source = match beneath::open_beneath(
        root.as_fd(),
        Path::new(target),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(err)
            if err.kind() == io::ErrorKind::NotFound
                || err.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(0)
        }
        Err(err) => return Err(err),
    };
    let dest = rustix::fs::open(
        volume_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // The volume's root takes the owner and mode of the image's directory
    // (a database image's data directory is owned by its user).
    let stat = rustix::fs::fstat(&source)?;
    rustix::fs::fchown(&dest, Some(uid(stat.st_uid)), Some(gid(stat.st_gid)))?;
    rustix::fs::fchmod(&dest, Mode::from_raw_mode(stat.st_mode & 0o7777))?;
    let mut count = 0;
    copy_dir(source.as_fd(), dest.as_fd(), &mut count)?;
    Ok(count)
}

/// Whether directory `dir` has no entries (a volume is seeded only then).
pub fn is_empty_dir(dir: &Path) -> io::Result<bool> {
    Ok(std::fs::read_dir(dir)?.next().is_none())
}

fn uid(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(raw)
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(raw)
}

fn copy_dir(source: BorrowedFd<'_>, dest: BorrowedFd<'_>, count: &mut u64) -> io::Result<()> {
    // A Dir reads from its own duplicate, leaving `source` usable for the *at calls.
    let dir = rustix::fs::Dir::read_from(source)?;
    for entry in dir {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        copy_entry(source, dest, OsStr::from_bytes(name), count)?;
    }
    Ok(())
}

fn copy_entry(
    source: BorrowedFd<'_>,
    dest: BorrowedFd<'_>,
    name: &OsStr,
    count: &mut u64,
) -> io::Result<()> {
    let stat = rustix::fs::statat(source, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let mode = Mode::from_raw_mode(stat.st_mode & 0o7777);
    let (owner, group) = (Some(uid(stat.st_uid)), Some(gid(stat.st_gid)));
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {
            rustix::fs::mkdirat(dest, name, Mode::from_raw_mode(0o700))?;
            let from = open_child(source, name, OFlags::RDONLY | OFlags::DIRECTORY)?;
            let to = open_child(dest, name, OFlags::RDONLY | OFlags::DIRECTORY)?;
            copy_dir(from.as_fd(), to.as_fd(), count)?;
            rustix::fs::fchown(&to, owner, group)?;
            rustix::fs::fchmod(&to, mode)?;
        }
        FileType::RegularFile => {
            let from = open_child(source, name, OFlags::RDONLY)?;
            let to = rustix::fs::openat(
                dest,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let (mut from, mut to) = (File::from(from), File::from(to));
            io::copy(&mut from, &mut to)?;
            rustix::fs::fchown(&to, owner, group)?;
            rustix::fs::fchmod(&to, mode)?;
        }
        FileType::Symlink => {
            let points_to = rustix::fs::readlinkat(source, name, Vec::new())?;
            rustix::fs::symlinkat(points_to.as_c_str(), dest, name)?;
            rustix::fs::chownat(dest, name, owner, group, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        FileType::Fifo => {
            rustix::fs::mknodat(dest, name, FileType::Fifo, mode, 0)?;
            rustix::fs::chownat(dest, name, owner, group, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        other => {
            tracing::debug!(name = %name.to_string_lossy(), ?other, "not copied into the volume");
            return Ok(());
        }
    }
    *count += 1;
    Ok(())
}

fn open_child(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    #[test]
    fn the_images_files_owners_modes_and_links_are_copied() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let data = rootfs.join("var/lib/app");
        fs::create_dir_all(data.join("sub")).unwrap();
        fs::write(data.join("config"), "x=1\n").unwrap();
        fs::set_permissions(data.join("config"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::write(data.join("sub/deep"), "deep").unwrap();
        symlink("/etc/passwd", data.join("link")).unwrap();
        std::os::unix::fs::chown(&data, Some(999), Some(998)).unwrap();
        std::os::unix::fs::chown(data.join("config"), Some(999), Some(998)).unwrap();
        let volume = dir.path().join("_data");
        fs::create_dir(&volume).unwrap();
        let copied = seed_from_image(&rootfs, "/var/lib/app", &volume).unwrap();
        assert_eq!(copied, 4);
        assert_eq!(fs::read_to_string(volume.join("config")).unwrap(), "x=1\n");
        assert_eq!(fs::read_to_string(volume.join("sub/deep")).unwrap(), "deep");
        let meta = fs::metadata(volume.join("config")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (999, 998, 0o640)
        );
        assert_eq!(
            fs::metadata(&volume).unwrap().uid(),
            999,
            "the root takes the directory's owner"
        );
        assert_eq!(
            fs::read_link(volume.join("link")).unwrap(),
            Path::new("/etc/passwd"),
            "copied as a link, not followed"
        );
    }

    #[test]
    fn a_symlinked_target_is_resolved_inside_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(rootfs.join("etc/inside"), "image file").unwrap();
        // Hostile: the volume target is a link to /etc, and another to ../../
        symlink("/etc", rootfs.join("data")).unwrap();
        symlink("../../../../..", rootfs.join("up")).unwrap();
        let volume = dir.path().join("_data");
        fs::create_dir(&volume).unwrap();
        seed_from_image(&rootfs, "/data", &volume).unwrap();
        let names: Vec<_> = fs::read_dir(&volume)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("inside")],
            "the image's /etc, not the host's"
        );
        let volume2 = dir.path().join("_data2");
        fs::create_dir(&volume2).unwrap();
        seed_from_image(&rootfs, "/up", &volume2).unwrap();
        let names: Vec<_> = fs::read_dir(&volume2)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, vec!["data", "etc", "up"], "'..' stops at the rootfs");
    }

    #[test]
    fn a_missing_directory_seeds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("rootfs")).unwrap();
        fs::create_dir(dir.path().join("_data")).unwrap();
        assert_eq!(
            seed_from_image(
                &dir.path().join("rootfs"),
                "/nope",
                &dir.path().join("_data")
            )
            .unwrap(),
            0
        );
        assert!(is_empty_dir(&dir.path().join("_data")).unwrap());
    }
}
