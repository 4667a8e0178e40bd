# Sourced by test.sh and bench.sh: adds Debian's PostgreSQL to `need` when no initdb is
# found, and keeps the package from creating a cluster of its own (the tests and the
# benchmarks start their own servers; none is left on port 5432 that nobody stops).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql)
  as_root=""
  [ "$(id -u)" -eq 0 ] || as_root="sudo"
  $as_root mkdir -p /etc/postgresql-common
  [ -e /etc/postgresql-common/createcluster.conf ] ||
    echo "create_main_cluster = false" | $as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
