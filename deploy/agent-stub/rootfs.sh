# Sourced by the agent image builders.

# kept_if_built_from TAG LABEL HASH: with FORGE_HOOKS_STUB_REUSE=1, exits 0 (keeping TAG) when the image there records
# HASH in LABEL, i.e. was built from the same files (parallel test processes then share one image instead of re-tagging
# it under each other's running containers).
kept_if_built_from() {
  local tag="$1" label="$2" hash="$3"
  if [ "${FORGE_HOOKS_STUB_REUSE:-0}" = 1 ] \
    && [ "$(docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$tag" 2>/dev/null)" = "$hash" ]; then
    echo "kept $tag ($(docker image inspect -f '{{.Id}}' "$tag")): built from the same files"
    exit 0
  fi
}

# base_rootfs ROOT SHELL lays out a minimal root file system in ROOT — busybox
# (static) and its applets, /tmp, the home of user `claude` (uid 1000, login shell SHELL), `nobody` for the
# container's keeper process — ready for the caller to add its CLI and `docker import`.
base_rootfs() {
  local root="$1" shell="$2" busybox=/bin/busybox
  mkdir -p "$root"/{bin,usr/bin,usr/local/bin,etc,tmp,home/claude,proc,sys,dev,work}
  chmod 1777 "$root/tmp"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  cat > "$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/bin/sh
claude:x:1000:1000:claude:/home/claude:$shell
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
  cat > "$root/etc/group" <<GROUP
root:x:0:
claude:x:1000:
nogroup:x:65534:
GROUP
  chown -R 1000:1000 "$root/home/claude"
}
