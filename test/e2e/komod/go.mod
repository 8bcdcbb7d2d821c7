module example.com/komod

go 1.21
