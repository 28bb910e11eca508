# Recipe of the systemd base images (sourced by tests/images/build; its hash tags the images).
PACKAGES=python3,python3-apt,tzdata,sudo,systemd,systemd-sysv,dbus,iproute2,ca-certificates,gnupg,locales,procps,openssh-client,iputils-ping,netcat-openbsd

build_one() {
  local suite=$1 image="isikhnas-base-$1:$recipe_hash"
  if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image is up to date"; echo "$image"; return
  fi
  local root
  root=$(mktemp -d "/var/tmp/isikhnas-$suite.XXXXXX")
  work_dirs+=("$root" "$root.log")
  log "debootstrap $suite into $root (a few minutes)"
  local start=$SECONDS
  debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$root" "$MIRROR" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2; rm -f "$root.log"; return 1; }
  rm -f "$root.log"
  # Security and updates suites, so roles install what production would.
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb ${MIRROR%/debian}/debian-security $suite-security main
SOURCES
  # systemd in a container: no getty, no udev triggers, no first-boot wizard; an empty machine-id
  # so each container gets its own.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  for unit in getty.target console-getty.service systemd-firstboot.service \
              systemd-udevd.service systemd-udev-trigger.service systemd-networkd-wait-online.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  echo 'en_US.UTF-8 UTF-8' >"$root/etc/locale.gen"
  chroot "$root" locale-gen >/dev/null
  # Keep the image small: apt caches, lists, docs and man pages out.
  cat >"$root/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
NODOC
  # As Docker's own Debian images do: dpkg without fsync (a test container is thrown away, not power-cut).
  echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/02-docker-apt-speedup"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/usr/share/doc/*/changelog* "$root"/usr/share/man/* "$root"/tmp/* "$root"/var/log/*.log
  # The package index is gone: date its folder in the past so apt's cache_valid_time sees it as stale.
  mkdir -p "$root/var/lib/apt/lists/partial"
  touch -d '2000-01-01' "$root/var/lib/apt/lists" "$root/var/lib/apt/lists/partial"
  rm -f "$root/var/lib/apt/periodic/update-success-stamp"
  tar -C "$root" -c . | docker import \
    -c 'ENV container=docker' -c 'CMD ["/sbin/init"]' \
    - "$image" >/dev/null
  docker tag "$image" "isikhnas-base-$suite:latest"
  rm -rf "$root"
  # Older recipes' images of this suite are dead weight.
  docker image ls --format '{{.Repository}}:{{.Tag}}' "isikhnas-base-$suite" \
    | grep -vE ":($recipe_hash|latest)\$" | xargs -r docker image rm >/dev/null 2>&1 || true
  log "built $image in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
  echo "$image"
}

