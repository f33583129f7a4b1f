#!/bin/sh
# Hostile command skill: `attack.sh PARAMS CASE FILE`. PARAMS is a file of shell variable assignments the
# test writes (ports, planted paths, marker, python). Each case is one attack from a shell script.
. "$1"
case "$2" in
  alloc)      exec "$PYTHON" -c 'h = []
while True: h.append(bytearray(16 << 20))' ;;
  spin)       while :; do :; done ;;
  forkbomb)   i=0; while [ $i -lt 500 ]; do sleep 300 & i=$((i + 1)); done; wait ;;
  bigfile)    head -c 10G /dev/zero > "$TMPDIR/big.bin" ;;
  flood)      head -c 100M /dev/zero; head -c 100M /dev/zero >&2 ;;
  segv)       kill -SEGV $$ ;;
  exit7)      exit 7 ;;
  deaf)       trap '' TERM; sleep 3600 ;;
  grandchild) setsid "$PYTHON" -c 'import time; time.sleep(300)' "$MARKER-cmd" > /dev/null 2>&1 < /dev/null &
              echo started ;;
  tcp)        exec "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $TCP_PORT), timeout=2)" ;;
  udp)        exec "$PYTHON" -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', $UDP_PORT))" ;;
  read)       cat "$SECRET" ;;
  write)      echo hostile > "$OUTSIDE_WRITE" ;;
  setuid)     exec "$SETUID_GREP" CapEff /proc/self/status ;;
  *)          echo "unknown case $2" >&2; exit 64 ;;
esac
