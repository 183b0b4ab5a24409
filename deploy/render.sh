#!/bin/sh
# Renders a template of deploy/ into the file a service reads at start, each @NAME@ replaced by the hash
# of the password in environment variable NAME, then runs the rest of the command line (the image's own
# entrypoint).  Compose hands the service its passwords from .env; only their hashes reach the file, and
# every start renders them afresh, so the users always have the passwords .env has now.
#
#   render.sh rabbitmq|redis TEMPLATE OUTPUT [COMMAND...]
#
# The kind names the hash (the service's own format) and the user the service runs as, who must read OUTPUT.
set -eu

fail() {
    printf 'render.sh: %s\n' "$*" >&2
    exit 2
}

# RabbitMQ's rabbit_password_hashing_sha256: base64(salt + SHA-256(salt + password)), 4 random salt bytes.
rabbitmq_hash() {
    salt=$(mktemp)
    head -c 4 /dev/urandom >"$salt"
    { cat "$salt"; printf '%s' "$1"; } | openssl dgst -sha256 -binary | cat "$salt" - | base64 | tr -d '\n'
    rm -f "$salt"
}

# Redis's ACL: '#' and the hex SHA-256 of the password.
redis_hash() {
    printf '#%s' "$(printf '%s' "$1" | sha256sum | cut -c1-64)"
}

# A password goes into connection URLs unescaped, and must be too long to guess.
check_password() {  # name value
    case $2 in
        *[!A-Za-z0-9_-]*) fail "$1: may hold only letters, digits, '-' and '_' (it goes into a URL)" ;;
    esac
    [ "${#2}" -ge 16 ] || fail "$1: must be at least 16 characters"
}

[ $# -ge 3 ] || fail "usage: render.sh rabbitmq|redis TEMPLATE OUTPUT [COMMAND...]"
kind=$1 template=$2 output=$3
shift 3
case $kind in
    rabbitmq | redis) ;;
    *) fail "unknown kind '$kind' (rabbitmq or redis)" ;;
esac
[ -r "$template" ] || fail "cannot read the template $template"

rendered=$(cat "$template")
for name in $(grep -o '@[A-Z][A-Z0-9_]*@' "$template" | tr -d @ | sort -u); do
    password=$(printenv "$name") || fail "$name: is not set (compose takes it from .env)"
    check_password "$name" "$password"
    rendered=$(printf '%s\n' "$rendered" | sed "s|@$name@|$("${kind}_hash" "$password")|g")
done

umask 077
printf '%s\n' "$rendered" >"$output"
if [ "$(id -u)" = 0 ] && id "$kind" >/dev/null 2>&1; then
    chown "$kind" "$output"
fi

[ $# -eq 0 ] || exec "$@"
