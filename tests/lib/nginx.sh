# shellcheck shell=bash
# A private nginx on 127.0.0.1 serving a folder over https (TLS from a
# throw-away CA made here) and plain http, for web-served repositories.
# Needs repo.sh (repo_bg: the exit trap kills it by PID).
#
#   nginx_start ROOT   sets NGINX_HTTPS and NGINX_HTTP (ports), NGINX_CA (the
#                      CA's certificate, for CURL_CA_BUNDLE), and logs every
#                      response's body bytes to $T/nginx/logs/bytes.log
#   nginx_bytes        the body bytes served since the last nginx_bytes_reset
#   nginx_stop

NGINX_PID=

_nginx_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_nginx_certs() {
    local d=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=vmsync-test-ca -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
            -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null &&
        printf 'subjectAltName=IP:127.0.0.1\n' >"$d/san.ext" &&
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
            -days 2 -extfile "$d/san.ext" -out "$d/server.pem" 2>/dev/null
}

_nginx_conf() {
    local d=$1 root=$2
    # as root, nginx's workers would run as nobody, who cannot read a test's
    # private scratch folder
    cat <<CONF
daemon off;
$( ((EUID == 0)) && echo 'user root;')
# one process: the exit trap's kill -9 of its PID leaves no orphaned worker
master_process off;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections 128; }
http {
    default_type application/octet-stream;
    log_format bytes '\$body_bytes_sent \$status \$request_uri';
    access_log $d/logs/bytes.log bytes;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    sendfile on;
    server {
        listen 127.0.0.1:$NGINX_HTTPS ssl;
        ssl_certificate $d/server.pem;
        ssl_certificate_key $d/server.key;
        root $root;
    }
    server {
        listen 127.0.0.1:$NGINX_HTTP;
        root $root;
    }
}
CONF
}

nginx_start() {
    local d=$T/nginx
    mkdir -p "$d/logs" "$d/tmp"
    _nginx_certs "$d" || fail "openssl could not make the test CA"
    NGINX_HTTPS=$(_nginx_free_port)
    NGINX_HTTP=$(_nginx_free_port)
    NGINX_CA=$d/ca.pem
    _nginx_conf "$d" "$1" >"$d/nginx.conf"
    repo_bg nginx -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log"
    NGINX_PID=$REPO_BG_PID
    for _ in $(seq 100); do
        curl -s -o /dev/null --cacert "$NGINX_CA" "https://127.0.0.1:$NGINX_HTTPS/" && return 0
        sleep 0.1
    done
    fail "nginx did not start: $(tail -3 "$d/logs/error.log" 2>/dev/null)"
}

nginx_bytes_reset() { : >"$T/nginx/logs/bytes.log"; }
nginx_bytes() { awk '{ s += $1 } END { print s + 0 }' "$T/nginx/logs/bytes.log"; }

nginx_stop() {
    [[ -n $NGINX_PID ]] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    NGINX_PID=
}
