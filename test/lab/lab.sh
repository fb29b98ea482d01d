#!/bin/bash
# The project's service lab: nginx (80/443, autoindex, HTTP/2 ALPN on 443), sshd (22),
# vsftpd (21, anonymous), redis (6379) and memcached (11211) (plus, on request, the extra
# services below), all inside a network namespace this script creates with only `lo` up,
# so the standard ports never collide with anything on the machine and every address
# in 127.0.0.0/8 (e.g. the 256 "hosts" of 127.0.1.0/24) reaches the same services.
#
# Usage: lab.sh start | stop | status | exec CMD [ARGS...]
# Env:   NSEFLEET_LAB_NS   namespace name (default nsefleet-lab); use one per caller
#        NSEFLEET_LAB_DIR  parent dir for the lab's files (default ${TMPDIR:-/tmp});
#                          the lab works in $NSEFLEET_LAB_DIR/lab.$NSEFLEET_LAB_NS
#        NSEFLEET_LAB_WAIT seconds to wait for all ports (default 20)
#        NSEFLEET_LAB_KEYS optional dir keeping the TLS certificate and ssh host keys across
#                          labs (created and filled on first use)
#        NSEFLEET_LAB_STOCK=1 (the default) daemons with their stock listen settings, as
#                          ../shared/lab/lab.sh runs them: vsftpd's own listener (accept
#                          queue of 32), nginx's and redis' default backlogs (511),
#                          memcached's (1024). A real network is not tuned, and neither is
#                          the lab of any test or benchmark.
#                          NSEFLEET_LAB_STOCK=0: deep backlogs and an inetd-style vsftpd, only
#                          to tell by hand whether a failure comes from the daemons' queues.
#        NSEFLEET_LAB_EXTRA=1 also start the extra TCP services used by the conformance
#                          tests: exim4 smtp (25), dnsmasq (53), dovecot pop3/imap (110/143),
#                          rpcbind (111), slapd ldap (389), samba smbd (445), mariadb (3306);
#                          and UDP ones: dnsmasq (53), rpcbind (111), ntpsec's ntpd (123),
#                          net-snmp's snmpd (161, community "public")
# Needs root (ip netns). `stop` is idempotent.
set -uo pipefail

NS=${NSEFLEET_LAB_NS:-nsefleet-lab}
case "$NS" in *[!A-Za-z0-9_.-]*|'') echo "lab: bad namespace name '$NS'" >&2; exit 2;; esac
L=${NSEFLEET_LAB_DIR:-${TMPDIR:-/tmp}}/lab.$NS
WAIT=${NSEFLEET_LAB_WAIT:-20}
PORTS="21 22 80 443 6379 11211"
EXTRA=${NSEFLEET_LAB_EXTRA:-0}
STOCK=${NSEFLEET_LAB_STOCK:-1}
EXTRA_PORTS="25 53 110 111 143 389 445 3306"
UDP_PORTS=""
[ "$EXTRA" = 1 ] && PORTS="$PORTS $EXTRA_PORTS" && UDP_PORTS="53 111 123 161"

die() { echo "lab: $*" >&2; exit 1; }
ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$NS"; }
nsx() { ip netns exec "$NS" "$@"; }
# Scanners and servers both need many descriptors for 256-host runs.
raise_nofile() { ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; }

service_of() {
  case "$1" in 21) echo vsftpd;; 22) echo sshd;; 80|443) echo nginx;; 6379) echo redis-server;;
    11211) echo memcached;; 25) echo exim4;; 53) echo dnsmasq;; 110|143) echo dovecot;;
    111) echo rpcbind;; 389) echo slapd;; 445) echo smbd;; 3306) echo mariadbd;; 123) echo ntpd;;
    161) echo snmpd;; *) echo "port $1";; esac
}

# True when a TCP connect to 127.0.0.1:$1 inside the namespace succeeds.
port_answers() { nsx timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

do_stop() {  # do_stop [keep]: "keep" leaves the lab's files (logs) in place
  local pids p i
  if ns_exists; then
    # Daemons by pid file first, but only while the pid is still a process of our namespace
    # (a stale pid file must never hit an unrelated process that reused the number).
    for p in "$L"/run/*.pid; do
      [ -f "$p" ] || continue
      i=$(cat "$p" 2>/dev/null)
      [[ "$i" =~ ^[0-9]+$ ]] && [ "$(ip netns identify "$i" 2>/dev/null)" = "$NS" ] && kill "$i" 2>/dev/null
    done
    # Then whatever else lives in the namespace (connection children, `exec` commands):
    # every process there was started through this script.
    for i in $(seq 50); do
      pids=$(ip netns pids "$NS" 2>/dev/null | tr '\n' ' ')
      [ -z "${pids// /}" ] && break
      [ "$i" = 1 ] || [ "$i" = 25 ] && kill $pids 2>/dev/null
      sleep 0.1
    done
    pids=$(ip netns pids "$NS" 2>/dev/null | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
      kill -9 $pids 2>/dev/null
      for i in $(seq 20); do
        [ -z "$(ip netns pids "$NS" 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
    ip netns del "$NS" 2>/dev/null || die "could not delete namespace $NS"
  fi
  rm -f "$L"/run/*.pid 2>/dev/null
  [ "${1:-}" != keep ] && [ -d "$L" ] && [ -f "$L/.nsefleet-lab" ] && rm -rf "$L"
  ns_exists && die "namespace $NS still exists after stop"
  return 0
}

KEYFILES="key.pem cert.pem ssh_host_ed25519_key ssh_host_ed25519_key.pub ssh_host_rsa_key ssh_host_rsa_key.pub"

# Certificate and host keys; reused from $NSEFLEET_LAB_KEYS when set (so results cached from
# an earlier lab, e.g. by tools/bench, carry the same fingerprints), else fresh per start.
make_keys() {
  local K=${NSEFLEET_LAB_KEYS:-} f have=1
  if [ -n "$K" ]; then
    for f in $KEYFILES; do [ -f "$K/$f" ] || have=0; done
    # Regenerate a certificate that expires within a day.
    [ $have = 1 ] && ! openssl x509 -checkend 86400 -noout -in "$K/cert.pem" >/dev/null 2>&1 && have=0
    if [ $have = 1 ]; then
      for f in $KEYFILES; do cp "$K/$f" "$L/$f" || die "cannot copy $K/$f"; done
      chmod 600 "$L/key.pem" "$L/ssh_host_ed25519_key" "$L/ssh_host_rsa_key"
      return 0
    fi
  fi
  rm -f "$L/ssh_host_ed25519_key"* "$L/ssh_host_rsa_key"*
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$L/key.pem" -out "$L/cert.pem" -days 365 \
    -subj "/CN=lab.example/O=Lab Org/C=US" 2>/dev/null || die "openssl could not make the lab certificate"
  ssh-keygen -q -t ed25519 -N '' -f "$L/ssh_host_ed25519_key" || die "ssh-keygen failed"
  ssh-keygen -q -t rsa -b 2048 -N '' -f "$L/ssh_host_rsa_key" || die "ssh-keygen failed"
  if [ -n "$K" ]; then
    mkdir -p "$K" && for f in $KEYFILES; do cp "$L/$f" "$K/$f"; done
  fi
}

write_files() {
  mkdir -p "$L/www/admin" "$L/www/pub" "$L/ftp/pub" "$L/run" "$L/nginx-tmp" || die "cannot create $L"
  touch "$L/.nsefleet-lab"
  chmod 755 "$L" "$L/www" "$L/www/admin" "$L/www/pub" "$L/ftp" "$L/ftp/pub"
  echo '<html><head><title>Lab Title Page</title></head><body>hi</body></html>' > "$L/www/index.html"
  printf 'User-agent: *\nDisallow: /secret/\nDisallow: /admin/\n' > "$L/www/robots.txt"
  echo '<html><head><title>Admin</title></head><!-- admin comment --></html>' > "$L/www/admin/index.html"
  head -c 1150 /dev/urandom > "$L/www/favicon.ico"
  # An index-less directory for autoindex listings (http-ls).
  echo 'lab notes' > "$L/www/pub/notes.txt"
  head -c 4096 /dev/zero > "$L/www/pub/zeros.bin"
  echo 'lab ftp file' > "$L/ftp/README.txt"
  echo 'pub file' > "$L/ftp/pub/data.txt"
  # Fixed mtimes so ftp-anon listings and http-headers' Last-Modified/ETag do not depend on
  # when the lab started.
  touch -d '2024-01-02 03:04:05' "$L/ftp/README.txt" "$L/ftp/pub/data.txt" "$L/ftp/pub" \
    "$L/www/index.html" "$L/www/robots.txt" "$L/www/admin/index.html" "$L/www/favicon.ico" \
    "$L/www/pub/notes.txt" "$L/www/pub/zeros.bin" "$L/www/pub"
  make_keys

  local BACKLOG=" backlog=4096"
  [ "$STOCK" = 1 ] && BACKLOG=""
  cat > "$L/nginx.conf" <<NG
user root;
worker_processes 1;
worker_rlimit_nofile 16384;
daemon on;
pid $L/run/nginx.pid;
error_log $L/nginx.err;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  server_tokens on;
  client_body_temp_path $L/nginx-tmp/body;
  proxy_temp_path $L/nginx-tmp/proxy;
  fastcgi_temp_path $L/nginx-tmp/fastcgi;
  uwsgi_temp_path $L/nginx-tmp/uwsgi;
  scgi_temp_path $L/nginx-tmp/scgi;
  autoindex on;
  server { listen 80$BACKLOG; root $L/www; }
  server { listen 443 ssl http2$BACKLOG; ssl_certificate $L/cert.pem; ssl_certificate_key $L/key.pem; root $L/www; }
}
NG

  cat > "$L/sshd_config" <<SS
Port 22
ListenAddress 0.0.0.0
HostKey $L/ssh_host_ed25519_key
HostKey $L/ssh_host_rsa_key
PidFile $L/run/sshd.pid
MaxStartups 1000
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
LogLevel QUIET
SS

  # Stock: vsftpd's own listener (as ../shared/lab/lab.sh runs it); else inetd-style (below).
  local LISTEN="listen=NO"
  [ "$STOCK" = 1 ] && LISTEN="listen=YES
listen_port=21
background=YES
max_clients=1000
max_per_ip=1000"
  cat > "$L/vsftpd.conf" <<VS
$LISTEN
listen_ipv6=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root=$L/ftp
no_anon_password=YES
ftpd_banner=Lab FTP ready
secure_chroot_dir=/var/run/vsftpd/empty
seccomp_sandbox=NO
xferlog_enable=NO
vsftpd_log_file=$L/vsftpd.log
VS
}

# --- extra services (NSEFLEET_LAB_EXTRA=1) -----------------------------------------------------
# Each keeps its state under $L; none touches a system instance's config.
write_extra_files() {
  mkdir -p "$L/ldap" "$L/mysql" "$L/dovecot" "$L/dovecot-state" "$L/mail" \
    "$L/smb/private" "$L/smb/lock" "$L/smb/state" "$L/smb/cache" "$L/smb/ncalrpc" "$L/smb/share" ||
    die "cannot create $L"
  cat > "$L/snmpd.conf" <<EOF
agentAddress udp:0.0.0.0:161
rocommunity public
sysLocation Lab rack 1
sysContact lab@example.test
sysName labsnmp
EOF
  echo "driftfile $L/ntp.drift" > "$L/ntp.conf"
  cat > "$L/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
pidfile $L/run/slapd.pid
moduleload back_mdb
database mdb
suffix "dc=lab,dc=example"
rootdn "cn=admin,dc=lab,dc=example"
directory $L/ldap
EOF
  cat > "$L/dovecot.conf" <<EOF
base_dir = $L/dovecot
state_dir = $L/dovecot-state
instance_name = dovecot-$NS
protocols = imap pop3
listen = *
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:$L/mail/%u
log_path = $L/dovecot.log
passdb {
  driver = static
  args = password=labpass
}
userdb {
  driver = static
  args = uid=root gid=root home=$L/mail/%u
}
service imap-login {
  inet_listener imap {
    port = 143
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 110
  }
}
EOF
  # SMB1 stays enabled (server min protocol) so smb-os-discovery has something to ask.
  cat > "$L/smb.conf" <<EOF
[global]
  workgroup = LABGROUP
  netbios name = LABSMB
  server string = Lab Samba
  server role = standalone server
  smb ports = 445
  disable netbios = yes
  server min protocol = NT1
  map to guest = Bad User
  private dir = $L/smb/private
  lock directory = $L/smb/lock
  state directory = $L/smb/state
  cache directory = $L/smb/cache
  pid directory = $L/run
  ncalrpc dir = $L/smb/ncalrpc
  log file = $L/smb/log.%m
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
[pub]
  path = $L/smb/share
  read only = yes
  guest ok = yes
EOF
  # Debian's generated exim config, with room for many concurrent connections: its default
  # of 20 makes ssl-enum-ciphers over STARTTLS (plus the smtp-* scripts) fail at random.
  { echo "smtp_accept_max = 1000"; echo "smtp_connect_backlog = 1000"
    cat /var/lib/exim4/config.autogenerated; } > "$L/exim4.conf" ||
    die "cannot write $L/exim4.conf (is exim4-config installed?)"
  chmod 644 "$L/exim4.conf"
  # root with an empty password, so mysql-empty-password has a finding.
  mariadb-install-db --no-defaults --datadir="$L/mysql" --user=root \
    --auth-root-authentication-method=normal --skip-test-db >"$L/mysql-install.log" 2>&1 ||
    die "mariadb-install-db failed (log $L/mysql-install.log)"
}

# Echoes the names of the extra daemons that failed to launch.
start_extra() {
  local fail=""
  # UDP: snmpd with its own configuration only (-C), ntpd without upstream servers (it answers
  # clients and mode 6 queries, unsynchronized).
  mkdir -p "$L/snmp"
  SNMP_PERSISTENT_DIR="$L/snmp" nsx snmpd -C -c "$L/snmpd.conf" -p "$L/run/snmpd.pid" \
    -Lf "$L/snmpd.log" || fail="$fail snmpd"
  nsx ntpd -c "$L/ntp.conf" -p "$L/run/ntpd.pid" -l "$L/ntpd.log" >/dev/null 2>&1 || fail="$fail ntpd"
  nsx slapd -h "ldap://0.0.0.0:389/" -f "$L/slapd.conf" || fail="$fail slapd"
  nsx dovecot -c "$L/dovecot.conf" || fail="$fail dovecot"
  # -oX picks the lab's listener, -oP its pid file.
  nsx exim4 -C "$L/exim4.conf" -bd -oX 0.0.0.0.25 -oP "$L/run/exim4.pid" || fail="$fail exim4"
  nsx smbd -D -s "$L/smb.conf" || fail="$fail smbd"
  nsx dnsmasq -C /dev/null --no-resolv --no-hosts --port=53 --pid-file="$L/run/dnsmasq.pid" \
    --user=root --group=root --address=/lab.example/127.0.0.1 --log-facility="$L/dnsmasq.log" ||
    fail="$fail dnsmasq"
  setsid ip netns exec "$NS" mariadbd --no-defaults --datadir="$L/mysql" --user=root --port=3306 \
    --bind-address=0.0.0.0 --socket="$L/run/mysql.sock" --pid-file="$L/run/mysql.pid" --skip-log-bin \
    --log-error="$L/mysql.err" --innodb-buffer-pool-size=16M </dev/null >/dev/null 2>&1 &
  # rpcbind has fixed paths under /run (socket, lock, warm-start files): give it a private
  # /run so it never meets a system rpcbind or another lab's.
  setsid ip netns exec "$NS" unshare -m --propagation private sh -c \
    'mount -t tmpfs lab-rpcbind /run && mkdir -p /run/rpcbind && echo $$ > "$1" && exec rpcbind -f' \
    sh "$L/run/rpcbind.pid" </dev/null >>"$L/rpcbind.log" 2>&1 &
  echo "$fail"
}

do_start() {

  [ "$(id -u)" = 0 ] || die "must run as root (ip netns)"
  do_stop
  write_files
  [ "$EXTRA" = 1 ] && write_extra_files
  ip netns add "$NS" || die "could not create namespace $NS"
  nsx ip link set lo up || { do_stop; die "could not bring up lo in $NS"; }
  raise_nofile

  local b
  local bins="nginx /usr/sbin/sshd vsftpd redis-server memcached systemd-socket-activate openssl ssh-keygen"
  [ "$EXTRA" = 1 ] && bins="$bins slapd dovecot exim4 smbd dnsmasq mariadbd mariadb-install-db rpcbind unshare snmpd ntpd"
  for b in $bins; do
    command -v "$b" >/dev/null || die "$b not found (run tools/setup)"
  done
  mkdir -p /run/sshd /var/run/vsftpd/empty
  local fail=""
  nsx nginx -e "$L/nginx.err" -c "$L/nginx.conf" || fail="nginx"
  nsx /usr/sbin/sshd -f "$L/sshd_config" || fail="$fail sshd"
  local rbacklog="--tcp-backlog 4096" mbacklog="-b 4096"
  if [ "$STOCK" = 1 ]; then
    # vsftpd's own listener: a fixed accept backlog of 32, so a burst of connects overflows
    # it, as on a real network. The scanner has to cope.
    rbacklog="" mbacklog=""
    nsx vsftpd "$L/vsftpd.conf" || fail="$fail vsftpd"
  else
    # Tuned: an inetd-style listener with a deep backlog spawning one vsftpd per connection
    # has no accept-queue cap (nor a client limit).
    setsid ip netns exec "$NS" systemd-socket-activate -l 0.0.0.0:21 -a --inetd \
      vsftpd "$L/vsftpd.conf" </dev/null >>"$L/vsftpd-activate.log" 2>&1 &
  fi
  # shellcheck disable=SC2086
  nsx redis-server --port 6379 --bind 0.0.0.0 --dir "$L" --daemonize yes --pidfile "$L/run/redis.pid" \
    --protected-mode no --maxclients 4000 $rbacklog --save '' --appendonly no --logfile "$L/redis.log" \
    >/dev/null || fail="$fail redis-server"
  # shellcheck disable=SC2086
  nsx memcached -d -p 11211 -U 0 -u root -c 4096 $mbacklog -P "$L/run/memcached.pid" || fail="$fail memcached"
  [ "$EXTRA" = 1 ] && fail="$fail$(start_extra)"
  if [ -n "$fail" ]; then do_stop keep; die "failed to launch:$fail (logs in $L)"; fi

  # Bounded wait until every port accepts a connection.
  local deadline=$((SECONDS + WAIT)) p pending
  while :; do
    pending=""
    for p in $PORTS; do port_answers "$p" || pending="$pending $p"; done
    for p in $UDP_PORTS; do
      [ -n "$(nsx ss -lunH "sport = :$p" 2>/dev/null)" ] || pending="$pending $p/udp"
    done
    [ -z "$pending" ] && break
    if [ $SECONDS -ge $deadline ]; then
      local names=""
      for p in $pending; do names="$names $(service_of "${p%/udp}"):$p"; done
      do_stop keep
      die "service(s) did not come up within ${WAIT}s:$names (logs in $L)"
    fi
    sleep 0.2
  done
  # The vsftpd listener (its own, or systemd-socket-activate) has no pid file option: record its pid.
  nsx ss -ltnpH 'sport = :21' 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 > "$L/run/vsftpd.pid"
  echo "lab: up in namespace $NS (dir $L): ports $PORTS${UDP_PORTS:+ udp $UDP_PORTS}$([ "$STOCK" = 1 ] && echo ' (stock listen settings)')"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  status)
    ns_exists || { echo "lab: namespace $NS not present"; exit 1; }
    rc=0
    for p in $PORTS; do
      if port_answers "$p"; then echo "$(service_of "$p"):$p up"; else echo "$(service_of "$p"):$p DOWN"; rc=1; fi
    done
    exit $rc ;;
  exec)
    [ $# -gt 0 ] || die "usage: lab.sh exec CMD [ARGS...]"
    ns_exists || die "namespace $NS not present (run lab.sh start first)"
    raise_nofile
    exec ip netns exec "$NS" "$@" ;;
  *) echo "usage: $0 start|stop|status|exec CMD [ARGS...]" >&2; exit 2 ;;
esac
