#!/bin/bash
# Run inside the mmdebstrap chroot (customize hook): one root filesystem for the three stand-ins
# (PostgreSQL, Redis, the Airflow base), imported three times with different entrypoints, so
# the engine stores it as a single layer.
set -euo pipefail
# Debian's postgresql package makes a cluster of its own; the stand-in makes one from the env.
rm -rf /var/lib/postgresql/15 /etc/postgresql/15
install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
install -d -o redis -g redis /data
# The official Airflow image's layout: user airflow (50000, group root), AIRFLOW_HOME
# /opt/airflow writable by group root (compose runs it as ${AIRFLOW_UID}:0), a Python whose
# pip installs the Dockerfile's lock (here a venv owned by airflow instead of ~/.local).
useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home --shell /bin/bash airflow
# the host interpreter's console scripts (their packages are not copied) point at its prefix
grep -l '^#!/root/' /usr/local/bin/* | xargs -r rm -f
ldconfig  # libpython3.11.so in /usr/local/lib (the host's CPython, copied in by the hook)
if ldd /usr/local/bin/python3.11 /usr/local/lib/python3.11/lib-dynload/*.so | grep 'not found'; then
  exit 1
fi
/usr/local/bin/python3.11 -m venv /home/airflow/.venv
/home/airflow/.venv/bin/python -m pip --version >/dev/null
install -d -o airflow -g 0 -m 0775 /opt/airflow /opt/airflow/dags /opt/airflow/logs /opt/airflow/plugins
chown -R airflow:0 /home/airflow && chmod -R g+rwX /home/airflow /opt
chmod 0755 /usr/local/bin/standin-*
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man /usr/share/locale
