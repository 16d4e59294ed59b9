#!/bin/sh
# Build the busybox fixture's root filesystem: Debian's busybox-static as
# /bin/busybox, one hardlink per applet, and a minimal /etc/passwd and
# /etc/group with root and nobody.
#
# usage: busybox-rootfs.sh OUTDIR     (OUTDIR/rootfs is created; must not exist)
set -eu

out=${1:?usage: busybox-rootfs.sh OUTDIR}
busybox=/bin/busybox
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
    echo "busybox-rootfs.sh: $busybox is missing or not static: apt-get install busybox-static" >&2
    exit 1
fi

stage="$out/rootfs.tmp.$$"
trap 'rm -rf "$stage"' EXIT
rm -rf "$stage"
mkdir -p "$stage"
cd "$stage"
mkdir -p bin sbin usr/bin usr/sbin etc root tmp proc sys dev home var/www
chmod 1777 tmp
chmod 700 root
cp "$busybox" bin/busybox
chmod 755 bin/busybox

# One hardlink per applet, where busybox says it belongs (/bin, /sbin, /usr/bin...).
"$busybox" --list-full | while read -r applet; do
    case "$applet" in bin/busybox | linuxrc) continue ;; esac
    [ -e "$applet" ] || ln bin/busybox "$applet"
done

cat > etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > etc/group <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
chmod 644 etc/passwd etc/group

# Reproducible: every mtime fixed (the layer digest then depends on content only).
find . -exec touch -h -d @0 {} +

cd - >/dev/null
mv "$stage" "$out/rootfs"
trap - EXIT
