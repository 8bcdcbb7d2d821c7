#!/usr/bin/env bash
# End-to-end: ocicached with TLS and mTLS on its gRPC port (--tls_cert,
# --tls_key, --tls_client_ca), the CLI through grpcs:// with --server-ca-file and
# a client certificate, bearer tokens over TLS, and one-line errors for every
# way a connection can be refused. Certificates come from the openssl command.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
oc() { "$OCICACHE_BIN" "$@"; }

PKI=$WORK/pki
make_pki "$PKI" && [[ -s $PKI/client.pem && -s $PKI/stranger.pem ]] \
  || { fail pki "openssl could not make the test certificates"; exit 1; }
start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }
R=$REG/tls/cache
head -c 200000 /dev/urandom >"$WORK/blob"

# --- flags checked at start: one line, exit 1 ------------------------------------------
expect_rc start-cert-without-key 1 "$OCICACHED_BIN" --listen=127.0.0.1:0 --dir "$WORK/x" --tls_cert "$PKI/server.pem"
expect_contains start-cert-without-key-says "$ERR" "--tls_cert and --tls_key go together"
expect_rc start-wrong-key 1 "$OCICACHED_BIN" --listen=127.0.0.1:0 --dir "$WORK/x" \
  --tls_cert "$PKI/server.pem" --tls_key "$PKI/client-key.pem"
expect_contains start-wrong-key-says "$ERR" "is not the key of the certificate"
expect_one_line start-wrong-key-one-line "$ERR"
expect_rc start-ca-not-pem 1 "$OCICACHED_BIN" --listen=127.0.0.1:0 --dir "$WORK/x" \
  --tls_cert "$PKI/server.pem" --tls_key "$PKI/server-key.pem" --tls_client_ca "$WORK/blob"
expect_contains start-ca-not-pem-says "$ERR" "holds no PEM certificate"
expect_rc start-client-ca-alone 1 "$OCICACHED_BIN" --listen=127.0.0.1:0 --dir "$WORK/x" --tls_client_ca "$PKI/ca.pem"

# --- TLS: a tiered server over the registry ---------------------------------------------
start_daemon T --repo "$R" --dir "$WORK/tls-dir" --tls_cert "$PKI/server.pem" --tls_key "$PKI/server-key.pem" \
  || { fail tls-start "ocicached with TLS did not start"; exit 1; }
G=grpcs://$T
expect_contains tls-log-says "$(cat "$WORK/T.err")" "(TLS, SERVING)"
expect_rc tls-put 0 oc --server "$G" --server-ca-file "$PKI/ca.pem" put tls/1 --blob "$WORK/blob"
expect_rc tls-get 0 oc --server "$G" --server-ca-file "$PKI/ca.pem" get tls/1 -o "$WORK/out1"
cmp -s "$WORK/blob" "$WORK/out1" && pass tls-roundtrip-identical || fail tls-roundtrip-identical "differs"
expect_rc tls-in-registry 0 oc --repo "$R" --no-dir stat tls/1
# The CA file alone implies TLS; the environment works as the flags do.
expect_rc tls-ca-implies-tls 0 oc --server "$T" --server-ca-file "$PKI/ca.pem" stat tls/1
expect_rc tls-env 0 env OCICACHE_SERVER="$G" OCICACHE_SERVER_CA="$PKI/ca.pem" "$OCICACHE_BIN" stat tls/1
# The HTTP cache endpoint serves HTTPS with the same certificate, and refuses plaintext.
H=https://$T_HTTP
printf 'over https' >"$WORK/hobj"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.pem" -T "$WORK/hobj" "$H/cache/ns/k")
[[ $code == 200 ]] && pass https-put || fail https-put "status $code"
got=$(curl -s --cacert "$PKI/ca.pem" "$H/cache/ns/k")
[[ $got == "over https" ]] && pass https-get || fail https-get "got \"$got\""
curl -s --max-time 5 -o /dev/null "http://$T_HTTP/cache/ns/k" && fail https-only "plain HTTP was answered" \
  || pass https-only
expect_rc tls-miss 1 oc --server "$G" --server-ca-file "$PKI/ca.pem" get tls/absent
expect_rc tls-ls 0 oc --server "$G" --server-ca-file "$PKI/ca.pem" ls
expect_contains tls-ls-lists "$OUT" "tls/1"
# Clear errors: plaintext against TLS, an untrusted certificate, TLS against plaintext.
expect_rc tls-plaintext-client 3 oc --server "$T" stat tls/1
expect_one_line tls-plaintext-client-one-line "$ERR"
expect_contains tls-plaintext-client-says "$ERR" "if it serves TLS, use grpcs://"
expect_rc tls-untrusted 3 oc --server "$G" stat tls/1
expect_one_line tls-untrusted-one-line "$ERR"
expect_contains tls-untrusted-says "$ERR" "TLS certificate is not trusted"
expect_rc tls-wrong-ca 3 oc --server "$G" --server-ca-file "$PKI/other-ca.pem" stat tls/1
expect_contains tls-wrong-ca-says "$ERR" "TLS certificate is not trusted"
expect_rc tls-grpc-scheme-with-ca 2 oc --server "grpc://$T" --server-ca-file "$PKI/ca.pem" stat tls/1
expect_rc tls-missing-ca-file 2 oc --server "$G" --server-ca-file "$WORK/absent.pem" stat tls/1
expect_one_line tls-missing-ca-file-one-line "$ERR"
start_daemon P --dir "$WORK/plain-dir" || { fail plain-start "ocicached did not start"; exit 1; }
expect_rc tls-against-plaintext 3 oc --server "grpcs://$P" --server-ca-file "$PKI/ca.pem" stat tls/1
expect_contains tls-against-plaintext-says "$ERR" "does not speak TLS"
expect_one_line tls-against-plaintext-one-line "$ERR"
stop_daemon T && pass tls-sigterm || fail tls-sigterm "exit $?"

# --- mTLS: client certificates required and verified, tokens with both scopes ------------
printf 'reader-token-0123456789 read\nwriter-token-0123456789 write\n' >"$WORK/tokens"
start_daemon M --repo "$R" --dir "$WORK/mtls-dir" --tls_cert "$PKI/server.pem" --tls_key "$PKI/server-key.pem" \
  --tls_client_ca "$PKI/ca.pem" --tokens_file "$WORK/tokens" \
  || { fail mtls-start "ocicached with mTLS did not start"; exit 1; }
expect_contains mtls-log-says "$(cat "$WORK/M.err")" "client certificates required"
M=grpcs://$M
with_ca=(--server "$M" --server-ca-file "$PKI/ca.pem")
client=(--server-cert-file "$PKI/client.pem" --server-key-file "$PKI/client-key.pem")
stranger=(--server-cert-file "$PKI/stranger.pem" --server-key-file "$PKI/stranger-key.pem")
wr() { env OCICACHE_SERVER_TOKEN=writer-token-0123456789 "$OCICACHE_BIN" "$@"; }
rd() { env OCICACHE_SERVER_TOKEN=reader-token-0123456789 "$OCICACHE_BIN" "$@"; }
expect_rc mtls-no-client-cert 3 wr "${with_ca[@]}" stat tls/1
expect_one_line mtls-no-client-cert-one-line "$ERR"
expect_contains mtls-no-client-cert-says "$ERR" "requires a client certificate"
expect_rc mtls-wrong-client-cert 3 wr "${with_ca[@]}" "${stranger[@]}" stat tls/1
expect_one_line mtls-wrong-client-cert-one-line "$ERR"
expect_contains mtls-wrong-client-cert-says "$ERR" "did not accept the client certificate"
expect_rc mtls-cert-without-key 2 wr "${with_ca[@]}" --server-cert-file "$PKI/client.pem" stat tls/1
expect_rc mtls-right-cert-writer-put 0 wr "${with_ca[@]}" "${client[@]}" put mtls/1 --blob "$WORK/blob"
expect_rc mtls-right-cert-reader-get 0 rd "${with_ca[@]}" "${client[@]}" get mtls/1 -o "$WORK/out2"
cmp -s "$WORK/blob" "$WORK/out2" && pass mtls-roundtrip-identical || fail mtls-roundtrip-identical "differs"
expect_rc mtls-reader-hit-written-by-tls-server 0 rd "${with_ca[@]}" "${client[@]}" stat tls/1
expect_rc mtls-reader-put-denied 3 rd "${with_ca[@]}" "${client[@]}" put mtls/2 --blob "$WORK/blob"
expect_contains mtls-reader-put-says "$ERR" "read-only"
expect_rc mtls-no-token 3 oc "${with_ca[@]}" "${client[@]}" stat mtls/1
expect_one_line mtls-no-token-one-line "$ERR"
expect_rc mtls-env-cert 0 env OCICACHE_SERVER_TOKEN=reader-token-0123456789 OCICACHE_SERVER="$M" \
  OCICACHE_SERVER_CA="$PKI/ca.pem" OCICACHE_SERVER_CERT="$PKI/client.pem" OCICACHE_SERVER_KEY="$PKI/client-key.pem" \
  "$OCICACHE_BIN" stat mtls/1
expect_rc mtls-writer-gc 0 wr "${with_ca[@]}" "${client[@]}" gc --keep-last 10 --dry-run
expect_contains mtls-access-log "$(cat "$WORK/M.err")" 'Entries/Put "mtls/1" OK'
# HTTP under mTLS: a certificate from the client CA and a token are needed.
HM=https://$M_HTTP
tok=(-H "Authorization: Bearer writer-token-0123456789")
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.pem" --cert "$PKI/client.pem" \
  --key "$PKI/client-key.pem" "${tok[@]}" -T "$WORK/hobj" "$HM/cache/ns/m")
[[ $code == 200 ]] && pass https-mtls-put || fail https-mtls-put "status $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.pem" "${tok[@]}" "$HM/cache/ns/m")
[[ $code == 403 || $code == 000 ]] && pass https-mtls-no-cert-refused || fail https-mtls-no-cert-refused "status $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.pem" --cert "$PKI/stranger.pem" \
  --key "$PKI/stranger-key.pem" "${tok[@]}" "$HM/cache/ns/m")
[[ $code == 403 || $code == 000 ]] && pass https-mtls-stranger-refused || fail https-mtls-stranger-refused "status $code"
stop_daemon M && pass mtls-sigterm || fail mtls-sigterm "exit $?"
stop_daemon P
