module example.com/sample

go 1.23

require example.com/dep v0.0.0

replace example.com/dep => ./dep
