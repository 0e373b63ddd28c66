# table.awk: the benches' figure table (make bench, bench-storm,
# bench-update), tab-separated rows in, aligned columns out, the value and
# ratio columns right-aligned, a dashed line under the header row.
{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NR }
END {
	for (r = 1; r <= n; r++) {
		line = ""
		for (i = 1; i <= 6; i++) {
			f = (i == 2 || i == 5) ? "%" w[i] "s" : "%-" w[i] "s"
			line = line (i > 1 ? "  " : "") sprintf(f, c[r, i])
		}
		sub(/ +$/, "", line)
		print line
		if (r == 1) {
			sep = ""
			for (i = 1; i <= 6; i++) sep = sep (i > 1 ? "  " : "") sprintf("%" w[i] "s", "")
			gsub(/ /, "-", sep)
			print sep
		}
	}
}
