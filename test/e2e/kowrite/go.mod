module example.com/kowrite

go 1.21
