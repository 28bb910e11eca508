# Recipe of the lab's AWS emulator image (sourced by tests/images/build).
# The lab's emulated AWS: moto's server in a bookworm container. Its wheels are downloaded on this host (the
# containers have no route to PyPI through this host's TLS-intercepting proxy) and installed offline.
build_moto() {
  local project moto_req image base="isikhnas-base-bookworm:$recipe_hash"
  project=$(cd "$here/../.." && pwd)
  moto_req=$(grep -E '^moto\[server\]==' "$project/requirements.txt")
  image="isikhnas-moto:$({ echo "$recipe_hash $moto_req"; cat "$here/moto.sh"; } | sha256sum | cut -c1-12)"
  if docker image inspect "$image" >/dev/null 2>&1; then log "$image is up to date"; echo "$image"; return; fi
  build_one bookworm >/dev/null
  local pip wheels container
  pip=$(command -v pip3 || command -v pip)
  [ -x "$project/.state/venv/bin/pip" ] && pip=$project/.state/venv/bin/pip
  wheels=$(mktemp -d /var/tmp/isikhnas-moto-wheels.XXXXXX)
  work_dirs+=("$wheels")
  log "downloading $moto_req wheels for Python 3.11"
  "$pip" download -q "$moto_req" --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d "$wheels" 2>&1 | grep -v '^WARNING' >&2 || true
  container=$(docker run -d "$base" sleep infinity)
  docker cp "$wheels" "$container:/tmp/wheels"
  docker exec "$container" sh -ec '
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv /opt/moto
    /opt/moto/bin/pip install -q --no-index --find-links /tmp/wheels "'"$moto_req"'"
    rm -rf /tmp/wheels /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /root/.cache'
  docker commit -c 'CMD ["/opt/moto/bin/moto_server", "-H", "0.0.0.0", "-p", "5000"]' -c 'EXPOSE 5000' \
    "$container" "$image" >/dev/null
  docker rm -f "$container" >/dev/null
  docker tag "$image" isikhnas-moto:latest
  docker image ls --format '{{.Repository}}:{{.Tag}}' isikhnas-moto \
    | grep -vE ":(${image#*:}|latest)\$" | xargs -r docker image rm >/dev/null 2>&1 || true
  log "built $image"
  echo "$image"
}

