# figures.sh: the figure rows of make bench, bench-storm and bench-update
# (sourced).  The caller sets ROWS (the rows, tab-separated), NOTES
# ("figure: why it was not measured"), REMARKS (free notes) and BENCH_HERE
# (this directory, for table.awk).
# shellcheck shell=bash

# fmt FLOAT DECIMALS
fmt() { awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; }

isnum() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

# row FIGURE VALUE UNIT REF_NAME REF_VALUE TARGET
# TARGET is ">=X" or "<=X" on the ratio, or "-".  REF_VALUE "-": no
# reference; "n/a": the reference could not be measured.
row() {
	local fig=$1 val=$2 unit=$3 rname=$4 rval=$5 tgt=$6 ref=- ratio=- t=-
	[ "$rname" = - ] || ref="$rname ($rval)"
	if isnum "$val" && isnum "$rval" && awk -v r="$rval" 'BEGIN { exit !(r > 0) }'; then
		ratio=$(awk -v a="$val" -v b="$rval" 'BEGIN { printf "%.2f", a / b }')
	fi
	if [ "$tgt" != - ]; then
		t=$tgt
		if [ "$ratio" != - ]; then
			if awk -v r="$ratio" -v op="${tgt:0:2}" -v x="${tgt:2}" \
				'BEGIN { exit !(op == ">=" ? r >= x : r <= x) }'; then
				t="$tgt met"
			else
				t="$tgt MISSED"
			fi
		fi
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$fig" "$val" "$unit" "$ref" \
		"$ratio" "$t" >>"$ROWS"
}

# na FIGURE UNIT REF_NAME REF_VALUE TARGET WHY: a figure not measured
# (NA_SEEN says one was).
na() {
	row "$1" n/a "$2" "$3" "$4" "$5"
	printf '%s: %s\n' "$1" "$6" >>"$NOTES"
	# shellcheck disable=SC2034 # read by the caller
	NA_SEEN=1
}

remark() { echo "$*" >>"$REMARKS"; }

# print_figures: the rows as a table, then what was not measured and the
# remarks (after the caller's header lines).
print_figures() {
	{
		printf 'figure\tvalue\tunit\treference\tratio\ttarget\n'
		cat "$ROWS"
	} | awk -F'\t' -f "$BENCH_HERE/table.awk"
	if [ -s "$NOTES" ]; then
		echo
		echo "not measured:"
		sed 's/^/  /' "$NOTES"
	fi
	if [ -s "$REMARKS" ]; then
		echo
		echo "notes:"
		sed 's/^/  /' "$REMARKS"
	fi
}

# sys_cpu: the machine's CPU time so far, "BUSY IOWAIT IDLE" in ticks
# (/proc/stat: busy = user nice system irq softirq steal).
sys_cpu() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $6, $5; exit }' /proc/stat
}
# cpu_split BEFORE AFTER: the deltas in CPU-seconds, "BUSY IOWAIT IDLE".
cpu_split() {
	awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		printf "%.2f %.2f %.2f\n", (y[1] - x[1]) / hz, (y[2] - x[2]) / hz, (y[3] - x[3]) / hz }'
}
