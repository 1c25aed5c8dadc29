#!/usr/bin/env bash
# Builds the seeds' demo image `kubia` — an HTTP server on 8080 answering "You've hit
# <hostname>" — as an OCI image layout, from Debian's busybox-static and no network.
# Reproducible: the same busybox gives byte-identical blobs (fixed times, owners, order).
#
#   scripts/build-kubia-image.sh [OUT_DIR]      (default: target/images/kubia)
#
# The layout can be imported into a node (`rudder image import OUT_DIR`, issue 5) or pushed
# to a local registry with `skopeo copy oci:OUT_DIR:latest docker://127.0.0.1:5000/kubia`.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-target/images/kubia}"
busybox="${BUSYBOX:-/bin/busybox}"
[ -x "$busybox" ] || busybox=/usr/bin/busybox
# (Not `busybox --list | grep -q`: with pipefail, grep quitting early fails the pipeline.)
if ! applets="$("$busybox" --list 2>&1)"; then
  echo "build-kubia-image: running $busybox failed: $applets" >&2
  exit 1
fi
if ! grep -qx httpd <<< "$applets"; then
  echo "build-kubia-image: needs a static busybox with httpd: apt-get install busybox-static" >&2
  exit 1
fi
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch="$(uname -m)" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root/bin" "$root/www/cgi-bin" "$root/tmp" "$root/etc"
install -m 0755 "$busybox" "$root/bin/busybox"
for tool in sh httpd hostname cat ls ps sleep env; do
  ln -s busybox "$root/bin/$tool"
done
install -m 0755 images/kubia/index.cgi "$root/www/cgi-bin/index.cgi"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"

# One layer, deterministic: sorted names, epoch times, root owner, no extra headers.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
  -C "$root" -cf "$work/layer.tar" .
gzip -n -9 < "$work/layer.tar" > "$work/layer.tar.gz"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
diff_id="$(sha "$work/layer.tar")"

mkdir -p "$out/blobs/sha256"
rm -f "$out"/blobs/sha256/*
put_blob() { # file → prints its digest, stores it under blobs/
  local digest
  digest="$(sha "$1")"
  cp "$1" "$out/blobs/sha256/$digest"
  echo "$digest"
}
layer="$(put_blob "$work/layer.tar.gz")"

printf '%s' '{"architecture":"'"$arch"'","os":"linux","config":{"Entrypoint":["/bin/httpd","-f","-v","-p","8080","-h","/www"],"ExposedPorts":{"8080/tcp":{}},"Env":["PATH=/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},"history":[{"created_by":"scripts/build-kubia-image.sh"}]}' > "$work/config.json"
config="$(put_blob "$work/config.json")"

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config"'","size":'"$(size "$work/config.json")"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'"$layer"'","size":'"$(size "$work/layer.tar.gz")"'}]}' > "$work/manifest.json"
manifest="$(put_blob "$work/manifest.json")"

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest"'","size":'"$(size "$work/manifest.json")"',"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' > "$out/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
echo "kubia image: $out (manifest sha256:$manifest)"
