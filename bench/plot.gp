# bench/plot.gp: plot.png from the .dat files report.py writes. Run by
# bench/run.sh as: gnuplot -e "dir='OUT_DIR'" bench/plot.gp
load dir.'/plot_targets.gp'
set terminal pngcairo size 1600,1200 font "DejaVu Sans,11" noenhanced
set output dir.'/plot.png'
set datafile missing '?'
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key top left
set grid ytics lc rgb '#dddddd'
set xtics nomirror font ",10"
set multiplot layout 2,2 title "errgroup (C++/oneTBB) vs Go x/sync (P2), same 2-vCPU machine; medians" font ",14"

# offset of series j (0-based) of n in a cluster with gap 1
off(j, n) = (j - (n - 1) / 2.0) / (n + 1.0)
fmtv(v) = v >= 100 ? sprintf('%.0f', v) : v >= 10 ? sprintf('%.1f', v) : sprintf('%.2f', v)

# 1. spawn
set title "1. spawn+wait, 1M empty tasks, per task (lower is better)".spawn_note
set key top right
set ylabel spawn_metric
set yrange [0:*]
set offsets 0, 0, graph 0.22, 0
unset logscale y
set xrange [-0.6:n_spawn - 0.4]
plot dir.'/plot_spawn.dat' using 2:xtic(1) title 'C++ errgroup / baseline' lc rgb '#1f77b4', \
     '' using 3 title 'Go P2 wall (mean of runs A, B)' lc rgb '#bbbbbb', \
     '' using ($0 + off(0, 2)):2:(fmtv($2)) with labels offset 0,0.7 notitle, \
     '' using ($0 + off(1, 2)):3:(fmtv($3)) with labels offset 0,0.7 notitle, \
     tbb_ns * 1.15 with lines dt 2 lw 2 lc rgb '#d62728' title 'target: 1.15 x raw tbb::task_group', \
     plain_ns * 2 with lines dt 3 lw 2 lc rgb '#ff7f0e' title 'target: 2 x unlimited group (limits)'

# 2. map
set xtics rotate by -15
set key top left
set title "2. map, 2^20 doubles x 200: speedup over sequential (higher is better)".map_note
set ylabel "speedup (x)"
set offsets 0, 0, 0, 0
set yrange [0:2.4]
set xrange [-0.6:n_map - 0.4]
plot dir.'/plot_map.dat' using 2:xtic(1) title 'C++' lc rgb '#2ca02c', \
     '' using 3 title 'Go P2' lc rgb '#bbbbbb', \
     '' using ($0 + off(0, 2)):2:(fmtv($2)) with labels offset 0,0.7 notitle, \
     '' using ($0 + off(1, 2)):3:(fmtv($3)) with labels offset 0,0.7 notitle, \
     pf_speed * 0.98 with lines dt 2 lw 2 lc rgb '#d62728' title 'target: 0.98 x tbb::parallel_for', \
     1 with lines lw 1 lc rgb '#555555' title 'sequential'

set xtics norotate
# 3. cancel
set title "3. cancellation, 10k tasks, #100 fails: failure -> wait() (lower is better)".cancel_note
set key top left horizontal
set ylabel "microseconds (log)"
set logscale y
set yrange [1:300000]
set xrange [-0.6:n_cancel - 0.4]
plot dir.'/plot_cancel.dat' using 2:xtic(1) title 'C++ errgroup' lc rgb '#9467bd', \
     '' using 3 title 'Go P2' lc rgb '#bbbbbb', \
     '' using ($0 + off(0, 2)):2:(fmtv($2)) with labels offset 0,0.7 notitle, \
     '' using ($0 + off(1, 2)):3:(fmtv($3)) with labels offset 0,0.7 notitle, \
     500 with lines dt 2 lw 2 lc rgb '#d62728' title 'target: 500 us'

# 4. semaphore
set key vertical
set title "4. semaphore, per acquire+release pair (lower is better)".sem_note
set key top left
set ylabel sem_metric." (log)"
set logscale y
set yrange [5:*]
set xrange [-0.6:n_sem - 0.4]
plot dir.'/plot_sem.dat' using 2:xtic(1) title 'errgroup::weighted' lc rgb '#1f77b4', \
     '' using 3 title 'std::counting_semaphore' lc rgb '#ff7f0e', \
     '' using 4 title 'mutex+condvar' lc rgb '#8c564b', \
     '' using 5 title 'Go P2' lc rgb '#bbbbbb', \
     '' using ($0 + off(0, 4)):2:(fmtv($2)) with labels offset 0,0.7 font ",9" notitle, \
     '' using ($0 + off(1, 4)):3:(fmtv($3)) with labels offset 0,0.7 font ",9" notitle, \
     '' using ($0 + off(2, 4)):4:(fmtv($4)) with labels offset 0,0.7 font ",9" notitle, \
     '' using ($0 + off(3, 4)):5:(fmtv($5)) with labels offset 0,0.7 font ",9" notitle, \
     20 with lines dt 2 lw 2 lc rgb '#d62728' title 'target: 20 ns (uncontended)'
unset multiplot
