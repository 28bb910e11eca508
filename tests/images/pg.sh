# Recipe of the PostgreSQL package layer (sourced by tests/images/build): a base image with the database
# packages already installed, for scenarios whose hosts need PostgreSQL + PostGIS but do not test installing it
# (the data nodes of postgresql_ha, the database host of webtier, the worker of python_daemons). Installing the
# PostGIS stack takes minutes per container; scenario `postgresql`, the witness and the lab still install it on
# plain base images.
#
# What the layer installs is what role `postgresql` installs (roles/postgresql/vars: the server for the
# release's PostgreSQL version, PostGIS, the client and psycopg2), after the same createcluster.d drop-in the
# role writes first (so the default cluster is the one the role would get: checksums, peer and scram), and
# python3-boto3 (role repmgr's promotion hook). The default cluster is created at each container's first boot
# (isikhnas-test-createcluster.service), not in the image: each gets its own system identifier. Not repmgr:
# scenario postgresql_ha's check run on fresh hosts shows that role's path with its package absent. The tag
# hashes this file, the base recipe and the role files the lists come from: the layer is rebuilt when any of
# them changes.
build_pg() {
  local suite=$1 project major line image container base="isikhnas-base-$1:$recipe_hash"
  project=$(cd "$here/../.." && pwd)
  case $suite in bookworm) major=15 ;; trixie) major=17 ;; *) log "no PostgreSQL layer for $suite"; return 2 ;; esac
  local version_file="$project/roles/postgresql/vars/Debian_${suite/bookworm/12}.yml"
  version_file=${version_file/trixie/13}
  grep -q "__postgresql_version: \"$major\"" "$version_file" || {
    log "$version_file does not name PostgreSQL $major: update tests/images/pg.sh"; return 1; }
  line=$(sed -n "s/^ *line: \"\(initdb_options = .*\)\"$/\1/p" "$project/roles/postgresql/tasks/install.yml")
  [ -n "$line" ] || { log "no initdb_options line in roles/postgresql/tasks/install.yml: update tests/images/pg.sh"; return 1; }
  image="isikhnas-pg-$suite:$({ echo "$recipe_hash"; cat "$here/pg.sh" "$version_file" \
    "$project/roles/postgresql/vars/main.yml" "$project/roles/postgresql/tasks/install.yml"; } | sha256sum | cut -c1-12)"
  if docker image inspect "$image" >/dev/null 2>&1; then log "$image is up to date"; echo "$image"; return; fi
  build_one "$suite" >/dev/null
  local start=$SECONDS
  container=$(docker run -d "$base" sleep infinity)
  docker exec -e LINE="$line" -e MAJOR="$major" "$container" sh -ec '
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "$LINE" > /etc/postgresql-common/createcluster.d/50-isikhnas.conf
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$MAJOR" "postgresql-$MAJOR-postgis-3" \
      postgresql-client-common python3-psycopg2 ssl-cert python3-boto3 >/dev/null
    # No cluster in the image: every container would share its system identifier, which repmgr rightly
    # refuses for a witness. Each container creates its own at first boot, as the package would have.
    pg_dropcluster --stop "$MAJOR" main
    cat >/etc/systemd/system/isikhnas-test-createcluster.service <<UNIT
[Unit]
Description=Create the default PostgreSQL cluster, as installing the package would (test image layer)
ConditionPathExists=!/etc/postgresql/$MAJOR/main
ConditionPathExists=/usr/lib/postgresql/$MAJOR/bin/initdb
After=local-fs.target
Before=postgresql.service

[Service]
Type=oneshot
ExecStart=/usr/bin/pg_createcluster --start $MAJOR main

[Install]
WantedBy=multi-user.target
UNIT
    ln -s /etc/systemd/system/isikhnas-test-createcluster.service /etc/systemd/system/multi-user.target.wants/
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
    mkdir -p /var/lib/apt/lists/partial
    touch -d 2000-01-01 /var/lib/apt/lists /var/lib/apt/lists/partial'
  docker commit -c 'CMD ["/sbin/init"]' "$container" "$image" >/dev/null
  docker rm -f "$container" >/dev/null
  docker tag "$image" "isikhnas-pg-$suite:latest"
  docker image ls --format '{{.Repository}}:{{.Tag}}' "isikhnas-pg-$suite" \
    | grep -vE ":(${image#*:}|latest)\$" | xargs -r docker image rm >/dev/null 2>&1 || true
  log "built $image in $((SECONDS - start)) s"
  echo "$image"
}
