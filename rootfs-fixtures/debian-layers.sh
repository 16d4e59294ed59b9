#!/bin/sh
# Make the three upper layers of a debian fixture the way a Dockerfile
# makes them: each step runs in an overlayfs mount over the layers below,
# and the step's upper directory *is* the layer (whiteouts as character
# devices 0/0, replaced directories marked trusted.overlay.opaque=y).
#
#   layer 1: a user added to /etc/passwd (uid 1000), files owned by it, a
#            hardlink in the layer and one to a file of the base layer,
#            absolute and relative symlinks, a setuid binary, a file with a
#            security.capability xattr, a fifo, an empty directory, a file
#            that later becomes a directory, the entrypoint script
#   layer 2: a single file and a whole directory deleted (whiteouts), a base
#            directory deleted and recreated with new content (opaque), a
#            layer-1 directory likewise, the file turned into a directory
#   layer 3: ... and back into a file; one more file owned by uid 1000
#
# usage: debian-layers.sh OUTDIR    (needs OUTDIR/rootfs; makes OUTDIR/layers/{1,2,3})
set -eu

out=${1:?usage: debian-layers.sh OUTDIR}
[ -d "$out/rootfs" ] || { echo "debian-layers.sh: $out/rootfs is missing" >&2; exit 1; }
command -v setcap >/dev/null || { echo "debian-layers.sh: setcap is missing: apt-get install libcap2-bin" >&2; exit 1; }

stage="$out/layers.tmp.$$"
merged="$stage/merged"
cleanup() {
    if mountpoint -q "$merged" 2>/dev/null; then umount -l "$merged"; fi
    rm -rf "$stage"
}
trap cleanup EXIT
rm -rf "$stage"
mkdir -p "$merged"

lower="$out/rootfs"
step() { # step N SCRIPT: run SCRIPT in a chroot over the layers so far, upper = layer N
    n=$1
    mkdir -p "$stage/$n" "$stage/work$n"
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$stage/$n,workdir=$stage/work$n" "$merged"
    chroot "$merged" /bin/sh -eu -c "$2"
    if [ "$n" = 1 ]; then
        setcap cap_net_raw+ep "$merged/usr/local/bin/cap-true"
    fi
    umount "$merged"
    rm -rf "$stage/work$n"
    lower="$stage/$n:$lower"
}

step 1 '
useradd --uid 1000 --user-group --create-home --shell /bin/bash app
mkdir -p /srv/app/empty /srv/app/cache /usr/local/bin
printf "hello from layer 1\n" > /srv/app/hello.txt
printf "owned by app\n" > /srv/app/owned-by-app
chown -R 1000:1000 /srv/app
ln /srv/app/hello.txt /srv/app/hello.hardlink
ln /etc/debian_version /srv/app/debian_version.hardlink
ln -s /etc/os-release /srv/app/os-release.abs
ln -s hello.txt /srv/app/hello.rel
cp /bin/true /usr/local/bin/suid-true
chmod 4755 /usr/local/bin/suid-true
cp /bin/true /usr/local/bin/cap-true
mkfifo /srv/app/fifo
printf "a file\n" > /srv/app/shape
for f in a b c; do echo "$f" > /srv/app/cache/$f; done
cat > /usr/local/bin/fixture-entrypoint <<"SCRIPT"
#!/bin/sh
# berth debian fixture entrypoint: run the command given, as most images do.
exec "$@"
SCRIPT
chmod 755 /usr/local/bin/fixture-entrypoint
'
step 2 '
rm /etc/issue.net
rm -r /usr/share/doc
rm -r /etc/apt/apt.conf.d
mkdir /etc/apt/apt.conf.d
printf "APT::Install-Recommends \"false\";\n" > /etc/apt/apt.conf.d/99berth
rm -r /srv/app/cache
mkdir /srv/app/cache
echo fresh > /srv/app/cache/fresh
rm /srv/app/shape
mkdir /srv/app/shape
printf "now a directory\n" > /srv/app/shape/inside
rm /srv/app/hello.rel
'
step 3 '
rm -r /srv/app/shape
printf "a file again\n" > /srv/app/shape
printf "layer 3\n" > /srv/app/layer3.txt
chown 1000:1000 /srv/app/layer3.txt
'

rm -rf "$merged"
mv "$stage" "$out/layers"
trap - EXIT
