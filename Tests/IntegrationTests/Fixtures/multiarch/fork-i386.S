# i386: fork once (the parent's recorded child), then both sleep in pause(); the parent reaps.
#   as --32 -o fork-i386.o fork-i386.S && ld -m elf_i386 -static -o fork-i386 fork-i386.o
    .globl _start
_start:
    movl $2, %eax          # fork
    int $0x80
    testl %eax, %eax
    jz 2f
1:  movl $29, %eax         # pause
    int $0x80
    movl $114, %eax        # wait4(-1, NULL, WNOHANG, NULL)
    movl $-1, %ebx
    xorl %ecx, %ecx
    movl $1, %edx
    xorl %esi, %esi
    int $0x80
    jmp 1b
2:  movl $29, %eax
    int $0x80
    jmp 2b
