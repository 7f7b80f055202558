-- Give a lease up if this holder has it. KEYS[1]: the lease key. ARGV: holder.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
