# Shared by the bench/ scripts (sourced).

# The median of the numbers on stdin, one a line.
median() {
	sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Run "$1" (mpsupd) and "$2" (the peer) REPS times, interleaved; each prints
# a rate. Prints the median rates and the median of the per-pair ratios;
# with SPREAD=1 also the lowest and highest ratio.
pairs() {
	local ms= rs= qs= m r
	for _ in $(seq "$REPS"); do
		m=$(eval "$1")
		r=$(eval "$2")
		ms="$ms$m"$'\n' rs="$rs$r"$'\n' qs="$qs$(echo "$m / $r" | bc -l)"$'\n'
	done
	printf '%12.0f %12.0f %7.2f' "$(printf '%s' "$ms" | median)" "$(printf '%s' "$rs" | median)" \
		"$(printf '%s' "$qs" | median)"
	if [ "${SPREAD:-0}" = 1 ]; then
		printf ' %5.2f-%-5.2f' "$(printf '%s' "$qs" | sort -g | head -n 1)" \
			"$(printf '%s' "$qs" | sort -g | tail -n 1)"
	fi
}
