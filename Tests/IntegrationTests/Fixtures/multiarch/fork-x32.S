# x32 (x86-64 instructions, 32-bit pointers, system call numbers | 0x40000000): fork once (the
# parent's recorded child), then both sleep in pause().
#   as --x32 -o fork-x32.o fork-x32.S && ld -m elf32_x86_64 -static -o fork-x32 fork-x32.o
    .globl _start
_start:
    movl $0x40000039, %eax   # fork
    syscall
    testl %eax, %eax
    jz 2f
1:  movl $0x40000022, %eax   # pause
    syscall
    jmp 1b
2:  movl $0x40000022, %eax
    syscall
    jmp 2b
