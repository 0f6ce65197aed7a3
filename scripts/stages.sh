# Sourced by .ci/run and scripts/test.sh: wall time of each stage, so drift
# is seen before it bites.
#
# stage NAME CMD...   runs CMD, prints "== NAME", and appends
#                     "NAME<TAB>SECONDS<TAB>ok|FAILED" to $CI_STAGES (when set)
# stage_table         prints the table of $CI_STAGES
stage() {
    local name="$1" start rc=0
    shift
    printf '== %s\n' "$name"
    start=$SECONDS
    "$@" || rc=$?
    if [ -n "${CI_STAGES:-}" ]; then
        printf '%s\t%s\t%s\n' "$name" "$((SECONDS - start))" "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)" >>"$CI_STAGES"
    fi
    return "$rc"
}

stage_table() {
    [ -n "${CI_STAGES:-}" ] && [ -s "$CI_STAGES" ] || return 0
    awk -F'\t' '
        BEGIN { printf "\n| stage | wall time | result |\n|---|---:|---|\n" }
        { printf "| %s | %d:%02d | %s |\n", $1, $2 / 60, $2 % 60, $3; total += $2 }
        END { printf "| **total** | **%d:%02d** | |\n", total / 60, total % 60 }
    ' "$CI_STAGES"
}
