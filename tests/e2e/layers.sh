#!/usr/bin/env bash
# The house rule of vmsync/lib: each folder includes only the folders below it
# (the README's "How it is built" gives the order), the repository backends
# never include each other, and the clients (vmsync/cli, agent) include only the
# public headers.  A private header reached from the wrong layer fails here,
# naming the file, the line and the include.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"

cd "$TESTS_LIB/../.."

# folder: the folders its files may include (besides the public headers)
declare -A allowed=(
    [base]="base"
    [manifest]="base manifest"
    [wire]="base wire"
    [repo]="base manifest repo repo/local repo/remote repo/bundle repo/web repo/cache"
    [repo/bundle]="base manifest repo repo/bundle"
    [repo/web]="base manifest repo repo/web"
    [repo/cache]="base manifest repo repo/cache"
    [sign]="base sign"
    [repo/local]="base manifest sign repo repo/local"
    [repo/remote]="base manifest wire repo repo/remote"
    [engine]="base manifest sign repo engine"
    [serve]="base manifest wire repo serve"
    [config]="base config"
)
public="vmsync.h fsparse.h"

check_file() { # FILE FOLDER
    local file=$1 folder=$2 line inc dir
    while IFS=: read -r line inc; do
        inc=${inc#*\"}
        inc=${inc%\"*}
        [[ " $public " == *" $inc "* ]] && continue
        dir=$(dirname "$inc")
        if [[ -z ${allowed[$folder]+set} ]]; then
            bad "$file: folder $folder is not in the layer table"
        elif [[ " ${allowed[$folder]} " != *" $dir "* ]]; then
            bad "$file:$line: includes \"$inc\": $folder may include only ${allowed[$folder]}"
        fi
    done < <(grep -n '^#include "' "$file")
}

n=0
while read -r file; do
    folder=$(dirname "${file#vmsync/lib/}")
    check_file "$file" "$folder"
    n=$((n + 1))
done < <(find vmsync/lib -name '*.[ch]' | sort)
((n > 20)) || bad "found only $n library files under vmsync/lib"

# Clients: the public headers, and headers of their own folder.
while read -r file; do
    while IFS=: read -r line inc; do
        inc=${inc#*\"}
        inc=${inc%\"*}
        [[ " $public " == *" $inc "* || -f $(dirname "$file")/$inc ]] ||
            bad "$file:$line: includes \"$inc\", which is not a public header"
    done < <(grep -n '^#include "' "$file")
done < <(find vmsync/cli agent gui-gtk -name '*.[ch]' | sort)

# The check itself must catch a reach: an engine file including a backend's
# private header.
probe=$T/probe.c
printf '#include "repo/local/local.h"\n' >"$probe"
before=$FAILS
check_file "$probe" engine >/dev/null
if ((FAILS == before)); then
    bad "an engine file including repo/local/local.h was not caught"
else
    FAILS=$before
fi
finish
