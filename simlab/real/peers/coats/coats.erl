%% The Erlang processes of experiments/callbacks_vs_coroutines.py: a process per
%% operation, as a gen_tcp server runs a process per connection; pending ones on
%% a scheduler per core, hops on one scheduler.
%%
%% Usage: erl -noshell -pa DIR -s coats main MODE ARGS...
%%   pending N     N processes each waiting an hour in receive ... after, holding its index
%%   hops C K MS   warm up, print READY, wait for a line on stdin, then rounds of C concurrent
%%                 processes each passing K times through the scheduler (erlang:yield())
%%                 until MS milliseconds have passed; print DONE with the rounds and the
%%                 wall time, and hold until stopped.
-module(coats).
-export([main/1]).

-define(HOUR_MS, 3600000).

main([Mode | Args]) ->
    run(atom_to_list(Mode), [list_to_integer(atom_to_list(A)) || A <- Args]).

run("pending", [N]) ->
    T0 = erlang:monotonic_time(),
    _ = [spawn(fun() -> receive after ?HOUR_MS -> I end end) || I <- lists:seq(1, N)],
    ready(T0),
    hold();
run("hops", [C, K, Ms]) ->
    %% One scheduler, as one event loop: a hop's CPU is then the scheduler's own
    %% work, not idle schedulers busy-waiting for processes.
    _ = erlang:system_flag(schedulers_online, 1),
    _ = rounds(C, K, Ms, erlang:monotonic_time(), 0),  % warm-up
    ready(erlang:monotonic_time()),
    %% The measurer reads the CPU count, then sends a line: the rounds start after it.
    _ = io:get_line(""),
    T0 = erlang:monotonic_time(),
    Rounds = rounds(C, K, Ms, T0, 0),
    io:format("DONE {\"rounds\": ~b, \"wall_s\": ~f}~n", [Rounds, seconds(T0)]),
    hold().

rounds(C, K, Ms, T0, Done) ->
    case seconds(T0) * 1000 >= Ms of
        true -> Done;
        false -> round(C, K), rounds(C, K, Ms, T0, Done + 1)
    end.

chain(0) -> ok;
chain(K) -> erlang:yield(), chain(K - 1).

round(C, K) ->
    Parent = self(),
    Pids = [spawn(fun() -> chain(K), Parent ! {done, self()} end) || _ <- lists:seq(1, C)],
    [receive {done, P} -> ok end || P <- Pids],
    ok.

seconds(T0) ->
    erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond) / 1.0e6.

ready(T0) ->
    io:format("READY {\"create_s\": ~f}~n", [seconds(T0)]).

hold() ->
    receive after ?HOUR_MS -> hold() end.
