# Sourced by .ci/run and scripts/test.sh: wall time of each stage, so drift
# is seen before it bites.
#
# stage NAME CMD...   runs CMD, prints "== NAME", and appends
#                     "DEPTH<TAB>NAME<TAB>SECONDS<TAB>ok|FAILED" to $CI_STAGES (when
#                     set); a stage run inside another (test.sh's groups inside
#                     .ci/run's tests) has a depth one greater
# stage_table         prints the table of $CI_STAGES; the total counts the
#                     outermost stages only
stage() {
    local name="$1" start rc=0 depth="${CI_STAGE_DEPTH:-0}"
    shift
    printf '== %s\n' "$name"
    start=$SECONDS
    CI_STAGE_DEPTH=$((depth + 1)) "$@" || rc=$?
    if [ -n "${CI_STAGES:-}" ]; then
        printf '%s\t%s\t%s\t%s\n' "$depth" "$name" "$((SECONDS - start))" "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)" >>"$CI_STAGES"
    fi
    return "$rc"
}

stage_table() {
    [ -n "${CI_STAGES:-}" ] && [ -s "$CI_STAGES" ] || return 0
    # Inner stages end (and are written) before the stage around them: print them after it.
    awk -F'\t' '
        { depth[NR] = $1; name[NR] = $2; secs[NR] = $3; result[NR] = $4 }
        END {
            printf "\n| stage | wall time | result |\n|---|---:|---|\n"
            n = 0
            for (i = 1; i <= NR; i++) {
                if (depth[i] > 0) { pending[++n] = i; continue }
                row(i)
                for (j = 1; j <= n; j++) row(pending[j])
                n = 0
                total += secs[i]
            }
            for (j = 1; j <= n; j++) row(pending[j])
            printf "| **total** | **%d:%02d** | |\n", total / 60, total % 60
        }
        function row(i,   indent) {
            indent = depth[i] > 0 ? "↳ " : ""
            printf "| %s%s | %d:%02d | %s |\n", indent, name[i], secs[i] / 60, secs[i] % 60, result[i]
        }
    ' "$CI_STAGES"
}
